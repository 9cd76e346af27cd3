//! One event on the wire. Its JSON is produced once and each transport's
//! framing (SSE or WebSocket text) once, on first use; every connection gets
//! the same shared bytes.

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// An event kind of the stream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Notification,
    Counts,
    State,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Notification => "notification",
            Kind::Counts => "counts",
            Kind::State => "state",
        }
    }
}

/// An encoded stream event.
#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    /// The notification's seq (the resume cursor); none for counts and state.
    pub seq: Option<i64>,
    data: String,
    sse: OnceLock<Bytes>,
    ws: OnceLock<Utf8Bytes>,
}

impl Frame {
    pub fn new(kind: Kind, seq: Option<i64>, data: String) -> Arc<Frame> {
        debug_assert!(
            !data.contains('\n'),
            "JSON from serde_json has no raw newline"
        );
        Arc::new(Frame {
            kind,
            seq,
            data,
            sse: OnceLock::new(),
            ws: OnceLock::new(),
        })
    }

    /// `id: <seq>` (notifications only), `event: <kind>`, `data: <json>`.
    pub fn sse(&self) -> Bytes {
        self.sse
            .get_or_init(|| {
                let mut out = String::with_capacity(self.data.len() + 48);
                if let Some(seq) = self.seq {
                    out.push_str("id: ");
                    out.push_str(&seq.to_string());
                    out.push('\n');
                }
                out.push_str("event: ");
                out.push_str(self.kind.as_str());
                out.push_str("\ndata: ");
                out.push_str(&self.data);
                out.push_str("\n\n");
                Bytes::from(out)
            })
            .clone()
    }

    /// `{"type": <kind>, "seq": <seq or null>, "data": <json>}`.
    pub fn ws(&self) -> Utf8Bytes {
        self.ws
            .get_or_init(|| {
                let seq = self
                    .seq
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "null".into());
                Utf8Bytes::from(format!(
                    r#"{{"type":"{}","seq":{seq},"data":{}}}"#,
                    self.kind.as_str(),
                    self.data
                ))
            })
            .clone()
    }
}

/// The SSE comment sent when nothing else was for a while.
pub const SSE_HEARTBEAT: &[u8] = b": heartbeat\n\n";
/// The WebSocket message sent when nothing else was for a while.
pub const WS_HEARTBEAT: &str = r#"{"type":"heartbeat","seq":null,"data":null}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_framings() {
        let f = Frame::new(Kind::Notification, Some(42), r#"{"id":"n"}"#.into());
        assert_eq!(
            &f.sse()[..],
            b"id: 42\nevent: notification\ndata: {\"id\":\"n\"}\n\n"
        );
        assert_eq!(
            f.ws().as_str(),
            r#"{"type":"notification","seq":42,"data":{"id":"n"}}"#
        );
        let c = Frame::new(Kind::Counts, None, r#"{"unread":1}"#.into());
        assert_eq!(&c.sse()[..], b"event: counts\ndata: {\"unread\":1}\n\n");
        assert_eq!(
            c.ws().as_str(),
            r#"{"type":"counts","seq":null,"data":{"unread":1}}"#
        );
        let v: serde_json::Value = serde_json::from_str(WS_HEARTBEAT).unwrap();
        assert_eq!(v["type"], "heartbeat");
    }
}
