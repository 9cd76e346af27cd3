//! Integration tests of the HTTP API against a real server on SQLite, or on
//! PostgreSQL when `BELFRY_TEST_POSTGRES_URL` is set (each test in a schema
//! of its own).

mod access;
mod actions;
mod admin;
mod audiences;
mod auth;
mod bus;
mod chat;
mod derived;
mod digest;
mod email;
mod events;
mod helpers;
mod inbox;
mod limits;
mod mobile;
mod ops;
mod overload;
mod preferences;
mod push;
mod retention;
mod security;
mod send;
mod sources;
mod starter;
mod streams;
mod summary;
mod templates;
mod users;
mod webhooks;
mod widget;
