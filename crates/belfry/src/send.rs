//! `belfry send`: a notification from the command line, over the HTTP API of
//! a running server.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Map, Value, json};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipient, repeatable: user:<id>, email:<address>, group:<id>, all,
    /// or entity:<type>/<id>
    #[arg(long = "to", required = true, value_name = "TARGET")]
    to: Vec<String>,
    /// Title (required).
    #[arg(long)]
    title: String,
    #[arg(long)]
    body: Option<String>,
    /// Link opened by a click.
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    category: Option<String>,
    /// Id of the user who triggered it (never notified).
    #[arg(long, value_name = "USER_ID")]
    actor: Option<String>,
    /// Collapse into one inbox entry with others of the same key.
    #[arg(long)]
    stack_key: Option<String>,
    /// Keep on screen until closed.
    #[arg(long)]
    sticky: bool,
    /// Makes a retried command safe: the same key never sends twice.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The server's URL.
    #[arg(long, env = "BELFRY_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A secret key with the send scope.
    #[arg(long, env = "BELFRY_API_KEY", hide_env_values = true)]
    key: String,
}

/// Turns `--to` values into the request's `to` object.
fn targets(values: &[String]) -> anyhow::Result<Value> {
    let mut users = Vec::new();
    let mut emails = Vec::new();
    let mut groups = Vec::new();
    let mut all = false;
    let mut entity = None;
    for v in values {
        match v.split_once(':') {
            Some(("user", id)) => users.push(id.to_string()),
            Some(("email", e)) => emails.push(e.to_string()),
            Some(("group", g)) => groups.push(g.to_string()),
            Some(("entity", e)) => {
                let (kind, id) = e.split_once('/').with_context(|| {
                    format!("--to {v}: write entity:<type>/<id>, e.g. entity:ticket/123")
                })?;
                entity = Some(json!({"type": kind, "id": id}));
            }
            None if v == "all" => all = true,
            _ => bail!(
                "--to {v}: use user:<id>, email:<address>, group:<id>, all or entity:<type>/<id>"
            ),
        }
    }
    let mut to = Map::new();
    if !users.is_empty() {
        to.insert("users".into(), json!(users));
    }
    if !emails.is_empty() {
        to.insert("emails".into(), json!(emails));
    }
    if !groups.is_empty() {
        to.insert("groups".into(), json!(groups));
    }
    if all {
        to.insert("all".into(), json!(true));
    }
    if let Some(e) = entity {
        to.insert("entity".into(), e);
    }
    Ok(Value::Object(to))
}

fn request_body(args: &SendArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("to".into(), targets(&args.to)?);
    body.insert("title".into(), json!(args.title));
    for (name, value) in [
        ("body", &args.body),
        ("url", &args.url),
        ("category", &args.category),
        ("stack_key", &args.stack_key),
        ("idempotency_key", &args.idempotency_key),
    ] {
        if let Some(v) = value {
            body.insert(name.into(), json!(v));
        }
    }
    if let Some(actor) = &args.actor {
        body.insert("actor".into(), json!({"id": actor}));
    }
    if args.sticky {
        body.insert("sticky".into(), json!(true));
    }
    Ok(Value::Object(body))
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let body = request_body(&args)?;
    let url = format!("{}/v1/notifications", args.server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.key)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach Belfry at {}; is it running?", args.server))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{text}");
        return Ok(());
    }
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|p| p.get("detail").and_then(Value::as_str).map(String::from))
        .unwrap_or(text);
    bail!("Belfry refused the notification ({status}): {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_parsed() {
        let to = targets(&[
            "user:u-17".into(),
            "email:ana@example.com".into(),
            "group:support".into(),
            "all".into(),
            "entity:ticket/123".into(),
        ])
        .unwrap();
        assert_eq!(
            to,
            json!({"users": ["u-17"], "emails": ["ana@example.com"], "groups": ["support"],
                   "all": true, "entity": {"type": "ticket", "id": "123"}})
        );
        assert!(targets(&["bob".into()]).is_err());
        assert!(targets(&["entity:ticket".into()]).is_err());
    }
}
