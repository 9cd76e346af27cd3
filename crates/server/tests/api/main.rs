//! Integration tests of the HTTP API against a real server on SQLite.

mod audiences;
mod auth;
mod bus;
mod email;
mod helpers;
mod inbox;
mod ops;
mod send;
mod streams;
mod users;
mod widget;
