//! The delivery decision: for one recipient and one notification, which
//! channels go now, which are held until the recipient's quiet hours end,
//! which go into the digest, which wait for the email fallback check, and
//! which are suppressed and why. Written once, with no I/O: the worker that
//! runs a delivery job asks it with the facts the store read for that job
//! (the recipient's preferences and time zone, the category).
//!
//! The rules, in order, for each channel beyond in-app:
//! 1. a channel takes part when the send's `channels` name it; without
//!    `channels`, when the recipient's (or the defaults') choice for the
//!    category or source switches it on, else the category's own default;
//! 2. a critical category ignores the master switch, the channel switches
//!    and any "off" (users cannot set one; one left from before the
//!    category became critical is ignored);
//! 3. otherwise the master switch, then the channel switch, then the
//!    category's, then the source's choice may suppress it;
//! 4. email needs an address (`no_address`);
//! 5. email in digest mode goes into the digest;
//! 6. a category with `email_fallback_after` emails only after that delay,
//!    if the notification was neither seen nor read by then;
//! 7. quiet hours hold everything that is not a bypassing category until
//!    they end.
//!
//! It also says when a user's daily digest runs next ([`next_digest`]) and
//! whether a user still takes a digest at all ([`uses_digest`]).

use belfry_core::preferences::{ChannelOverride, Effective, LocalTime, Overrides, QuietHours};
use belfry_core::{Category, CategoryDef, Channel, EmailMode, Millis};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a delivery did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    MasterSwitch,
    ChannelOff,
    CategoryOff,
    SourceOff,
    SeenInApp,
    NoAddress,
    /// The per-recipient rate limit: on a `held` line, the notification
    /// waits for the summary at `until`; on a `sent` line, it went out in it.
    RateLimited,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MasterSwitch => "master_switch",
            Reason::ChannelOff => "channel_off",
            Reason::CategoryOff => "category_off",
            Reason::SourceOff => "source_off",
            Reason::SeenInApp => "seen_in_app",
            Reason::NoAddress => "no_address",
            Reason::RateLimited => "rate_limited",
        }
    }
}

/// What happens to one channel's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver now.
    Now,
    /// Quiet hours: deliver at `until` (decided again then).
    Held {
        until: Millis,
    },
    /// Into the recipient's daily digest.
    Digest,
    /// Check at `at` whether it was seen or read in the app; email if not.
    Fallback {
        at: Millis,
    },
    Suppressed(Reason),
}

/// The facts about one recipient of one notification.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// The send's `channels`, if it named any.
    pub requested: Option<&'a [Channel]>,
    /// The notification's category (None: none, or since deleted).
    pub category: Option<&'a CategoryDef>,
    pub source: Option<&'a Category>,
    pub prefs: &'a Effective,
    pub zone: &'a TimeZone,
    pub has_email: bool,
    /// The fallback delay has passed and the notification is still unseen
    /// and unread (the fallback job asks with this set).
    pub fallback_checked: bool,
}

/// The channels beyond in-app, in the order decisions are listed.
pub const CHANNELS: [Channel; 4] = [
    Channel::Email,
    Channel::WebPush,
    Channel::MobilePush,
    Channel::Chat,
];

/// The decision for every channel that takes part (rule 1), in
/// [`CHANNELS`] order.
pub fn decide(s: &Situation<'_>, now: Millis) -> Vec<(Channel, Verdict)> {
    CHANNELS
        .into_iter()
        .filter(|c| takes_part(s, *c))
        .map(|c| (c, decide_channel(s, c, now)))
        .collect()
}

/// Whether a recipient's preferences (their own choice, else the
/// administrators' defaults) switch `channel` on for a notification of
/// `category` or from `source` that does not take it by default: then the
/// send plans a delivery on it for them after all (rule 1, read at publish
/// for the direct recipients).
pub fn opts_in(
    defaults: &Overrides,
    own: &Overrides,
    category: Option<&Category>,
    source: Option<&Category>,
    channel: Channel,
) -> bool {
    let prefs = Effective::of(defaults, own);
    let chosen = |map: &BTreeMap<Category, ChannelOverride>, id: Option<&Category>| {
        id.and_then(|id| map.get(id))
            .and_then(|o| o.switch(channel))
    };
    chosen(&prefs.categories, category).or_else(|| chosen(&prefs.sources, source)) == Some(true)
}

/// Rule 1: whether `channel` is part of this notification for this
/// recipient at all.
pub fn takes_part(s: &Situation<'_>, channel: Channel) -> bool {
    if let Some(list) = s.requested {
        return list.contains(&channel);
    }
    let chosen = |map: &BTreeMap<Category, ChannelOverride>, id: Option<&Category>| {
        id.and_then(|id| map.get(id))
            .and_then(|o| o.switch(channel))
    };
    chosen(&s.prefs.categories, s.category.map(|c| &c.id))
        .or_else(|| chosen(&s.prefs.sources, s.source))
        .or_else(|| s.category.map(|c| default_on(c, channel)))
        .unwrap_or(false)
}

fn default_on(c: &CategoryDef, channel: Channel) -> bool {
    match channel {
        Channel::InApp => true,
        Channel::Email => c.defaults.email != EmailMode::Off,
        Channel::WebPush => c.defaults.web_push,
        Channel::MobilePush => c.defaults.mobile_push,
        Channel::Chat => c.defaults.chat,
    }
}

/// Rules 2 to 7 for one channel that takes part.
pub fn decide_channel(s: &Situation<'_>, channel: Channel, now: Millis) -> Verdict {
    let critical = s.category.is_some_and(|c| c.critical);
    let category_choice = s
        .category
        .and_then(|c| s.prefs.categories.get(&c.id))
        .cloned()
        .unwrap_or_default();
    let source_choice = s
        .source
        .and_then(|id| s.prefs.sources.get(id))
        .cloned()
        .unwrap_or_default();
    if !critical {
        if !s.prefs.enabled {
            return Verdict::Suppressed(Reason::MasterSwitch);
        }
        if !s.prefs.channels.on(channel) {
            return Verdict::Suppressed(Reason::ChannelOff);
        }
        if category_choice.switch(channel) == Some(false) {
            return Verdict::Suppressed(Reason::CategoryOff);
        }
        if source_choice.switch(channel) == Some(false) {
            return Verdict::Suppressed(Reason::SourceOff);
        }
    }
    if channel == Channel::Email {
        if !s.has_email {
            return Verdict::Suppressed(Reason::NoAddress);
        }
        let mode = source_choice
            .email
            .or(category_choice.email)
            .or_else(|| s.category.map(|c| c.defaults.email))
            .filter(|m| *m != EmailMode::Off)
            .unwrap_or(EmailMode::Instant);
        if mode == EmailMode::Digest {
            return Verdict::Digest;
        }
        if let Some(after) = s.category.and_then(|c| c.email_fallback_after)
            && !s.fallback_checked
        {
            return Verdict::Fallback {
                at: now.plus_secs(after),
            };
        }
    }
    let bypass = s.category.is_some_and(|c| c.bypass_quiet_hours);
    if !bypass
        && let Some(q) = &s.prefs.quiet_hours
        && let Some(until) = quiet_until(q, s.zone, now)
    {
        return Verdict::Held { until };
    }
    Verdict::Now
}

/// When the quiet hours that `now` falls in end; None when `now` is not
/// quiet. A period starts at `start` on each of its days and ends at the
/// next `end` (the next day when `end` is not after `start`), in `zone`:
/// over midnight, and across daylight-saving changes (a local time that a
/// change skips moves forward by the length of the gap, 02:30 → 03:30; one
/// that occurs twice is its first occurrence). An end moved forward by a
/// gap can fall inside the next day's period (03:00 to 02:15 on the night
/// the clocks skip 02:00–03:00 ends at 03:15, after the next 03:00): the
/// periods then join, and the answer is the end of both, so that a held
/// delivery is not released into quiet hours.
pub fn quiet_until(q: &QuietHours, zone: &TimeZone, now: Millis) -> Option<Millis> {
    let mut end = period_end(q, zone, now)?;
    // Periods overlap only at a gap, so this takes one more step at most
    // twice a year; the bound is for safety.
    for _ in 0..7 {
        match period_end(q, zone, end) {
            Some(later) if later > end => end = later,
            _ => break,
        }
    }
    Some(end)
}

/// The latest end of the periods (today's, and yesterday's over midnight)
/// that `now` lies in.
fn period_end(q: &QuietHours, zone: &TimeZone, now: Millis) -> Option<Millis> {
    let ts = jiff::Timestamp::from_millisecond(now.0).ok()?;
    let today = ts.to_zoned(zone.clone()).date();
    let overnight = q.end <= q.start;
    let mut starts = vec![today];
    if overnight {
        starts.push(today.yesterday().ok()?);
    }
    let mut latest = None;
    for day in starts {
        if !q.starts_on(day.weekday()) {
            continue;
        }
        let end_day = if overnight { day.tomorrow().ok()? } else { day };
        let start = instant(zone, day.to_datetime(q.start.civil()))?;
        let end = instant(zone, end_day.to_datetime(q.end.civil()))?;
        if start <= now && now < end && latest.is_none_or(|l| end > l) {
            latest = Some(end);
        }
    }
    latest
}

/// When the daily digest at local `time` in `zone` runs next: the first
/// such instant strictly after `after`. A time that a daylight-saving
/// change skips that day moves forward by the gap (02:30 → 03:30), one that
/// occurs twice is its first occurrence (as quiet hours do), so the digest
/// runs exactly once on every local day.
pub fn next_digest(time: LocalTime, zone: &TimeZone, after: Millis) -> Option<Millis> {
    let ts = jiff::Timestamp::from_millisecond(after.0).ok()?;
    let mut day = ts.to_zoned(zone.clone()).date().yesterday().ok()?;
    // Yesterday's can only be later when a fold repeats the hour; the day
    // after tomorrow is never needed, but bounds the loop.
    for _ in 0..4 {
        let at = instant(zone, day.to_datetime(time.civil()))?;
        if at > after {
            return Some(at);
        }
        day = day.tomorrow().ok()?;
    }
    None
}

/// Whether a user takes a daily digest: emails are on for them (master and
/// email switch), and some category (by their choice, the defaults', or
/// its own default) or source of theirs is in digest mode. The digest job
/// of a user who no longer does ends itself.
pub fn uses_digest(prefs: &Effective, categories: &[CategoryDef]) -> bool {
    if !prefs.enabled || !prefs.channels.email {
        return false;
    }
    let digest = |o: &ChannelOverride| o.email == Some(EmailMode::Digest);
    prefs.sources.values().any(digest)
        || prefs.categories.values().any(digest)
        || categories.iter().any(|c| {
            c.defaults.email == EmailMode::Digest
                && prefs.categories.get(&c.id).and_then(|o| o.email).is_none()
        })
}

fn instant(zone: &TimeZone, dt: jiff::civil::DateTime) -> Option<Millis> {
    // `to_ambiguous_zoned(..).compatible()`: a gap moves forward, a fold
    // takes the earlier instant.
    let z = zone.to_ambiguous_zoned(dt).compatible().ok()?;
    Some(Millis(z.timestamp().as_millisecond()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::preferences::Overrides;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn at(s: &str) -> Millis {
        Millis::parse_rfc3339(s).unwrap()
    }

    fn cat(id: &str) -> CategoryDef {
        CategoryDef::new(Category::parse(id).unwrap())
    }

    fn prefs(patch: serde_json::Value) -> Effective {
        let mut o = Overrides::default();
        let known = HashMap::from([
            (Category::parse("mention").unwrap(), false),
            (Category::parse("system").unwrap(), false),
        ]);
        o.patch(&patch, &known).unwrap();
        Effective::of(&Overrides::default(), &o)
    }

    fn quiet(start: &str, end: &str) -> QuietHours {
        QuietHours {
            start: LocalTime::parse(start).unwrap(),
            end: LocalTime::parse(end).unwrap(),
            days: belfry_core::preferences::DAYS
                .iter()
                .map(|d| d.to_string())
                .collect(),
        }
    }

    #[test]
    fn opting_in_reads_the_users_choice_then_the_defaults_category_before_source() {
        let o = |json: &str| -> Overrides { serde_json::from_str(json).unwrap() };
        let mention = Category::parse("mention").unwrap();
        let desk = Category::parse("helpdesk").unwrap();
        let none = Overrides::default();
        let yes = |defaults: &Overrides, own: &Overrides, source: Option<&Category>| {
            opts_in(defaults, own, Some(&mention), source, Channel::Email)
        };
        assert!(!yes(&none, &none, None), "nobody chose anything");
        assert!(yes(
            &none,
            &o(r#"{"categories":{"mention":{"email":"digest"}}}"#),
            None
        ));
        assert!(!yes(
            &none,
            &o(r#"{"categories":{"mention":{"email":"off"}}}"#),
            None
        ));
        assert!(yes(
            &none,
            &o(r#"{"sources":{"helpdesk":{"email":"instant"}}}"#),
            Some(&desk)
        ));
        assert!(!yes(
            &none,
            &o(r#"{"sources":{"helpdesk":{"email":"instant"}}}"#),
            None
        ));
        // The administrators' defaults, unless the user says otherwise.
        let on = o(r#"{"categories":{"mention":{"email":"instant"}}}"#);
        assert!(yes(&on, &none, None));
        assert!(!yes(
            &on,
            &o(r#"{"categories":{"mention":{"email":"off"}}}"#),
            None
        ));
        // The category's choice comes before the source's.
        assert!(!yes(
            &none,
            &o(
                r#"{"categories":{"mention":{"email":"off"}},"sources":{"helpdesk":{"email":"instant"}}}"#
            ),
            Some(&desk)
        ));
        // Per channel.
        let push = o(r#"{"categories":{"mention":{"web_push":true}}}"#);
        assert!(opts_in(
            &none,
            &push,
            Some(&mention),
            None,
            Channel::WebPush
        ));
        assert!(!opts_in(&none, &push, Some(&mention), None, Channel::Email));
    }

    fn email_only() -> Vec<Channel> {
        vec![Channel::InApp, Channel::Email]
    }

    fn situation<'a>(
        requested: &'a [Channel],
        category: Option<&'a CategoryDef>,
        prefs: &'a Effective,
        zone: &'a TimeZone,
    ) -> Situation<'a> {
        Situation {
            requested: Some(requested),
            category,
            source: None,
            prefs,
            zone,
            has_email: true,
            fallback_checked: false,
        }
    }

    #[test]
    fn each_suppression_reason() {
        let utc = TimeZone::UTC;
        let channels = email_only();
        let mention = cat("mention");
        let now = at("2026-06-01T12:00:00Z");
        let cases = [
            (json!({"enabled": false}), Reason::MasterSwitch),
            (json!({"channels": {"email": false}}), Reason::ChannelOff),
            (
                json!({"categories": {"mention": {"email": "off"}}}),
                Reason::CategoryOff,
            ),
            (
                json!({"sources": {"helpdesk": {"email": "off"}}}),
                Reason::SourceOff,
            ),
        ];
        let helpdesk = Category::parse("helpdesk").unwrap();
        for (patch, reason) in cases {
            let p = prefs(patch);
            let mut s = situation(&channels, Some(&mention), &p, &utc);
            s.source = Some(&helpdesk);
            assert_eq!(
                decide(&s, now),
                vec![(Channel::Email, Verdict::Suppressed(reason))]
            );
        }
        let p = prefs(json!({}));
        let mut s = situation(&channels, Some(&mention), &p, &utc);
        s.has_email = false;
        assert_eq!(
            decide_channel(&s, Channel::Email, now),
            Verdict::Suppressed(Reason::NoAddress)
        );
    }

    #[test]
    fn critical_categories_ignore_switches() {
        let utc = TimeZone::UTC;
        let channels = email_only();
        let mut system = cat("system");
        system.critical = true;
        let p = prefs(
            json!({"enabled": false, "channels": {"email": false}, "categories": {"system": {"email": "off"}}}),
        );
        let s = situation(&channels, Some(&system), &p, &utc);
        assert_eq!(
            decide(&s, at("2026-06-01T12:00:00Z")),
            vec![(Channel::Email, Verdict::Now)]
        );
    }

    #[test]
    fn channels_of_the_send_and_of_the_category() {
        let utc = TimeZone::UTC;
        let mention = cat("mention");
        let p = prefs(json!({}));
        let now = at("2026-06-01T12:00:00Z");
        let mut s = situation(&[], Some(&mention), &p, &utc);
        s.requested = None;
        // Category defaults: email off, pushes on.
        assert_eq!(
            decide(&s, now),
            vec![
                (Channel::WebPush, Verdict::Now),
                (Channel::MobilePush, Verdict::Now)
            ]
        );
        let mut digest = mention.clone();
        digest.defaults.email = EmailMode::Digest;
        digest.defaults.web_push = false;
        digest.defaults.mobile_push = false;
        let s2 = Situation {
            category: Some(&digest),
            ..s.clone()
        };
        assert_eq!(decide(&s2, now), vec![(Channel::Email, Verdict::Digest)]);
        // The user's choice widens what the category does by default...
        let p = prefs(json!({"categories": {"mention": {"chat": true, "email": "instant"}}}));
        let s3 = Situation {
            prefs: &p,
            ..s2.clone()
        };
        assert_eq!(
            decide(&s3, now),
            vec![
                (Channel::Email, Verdict::Now),
                (Channel::Chat, Verdict::Now)
            ]
        );
        // ...and the send's channels override both (preferences still apply).
        let only_push = [Channel::WebPush];
        let s4 = Situation {
            requested: Some(&only_push),
            ..s3
        };
        assert_eq!(decide(&s4, now), vec![(Channel::WebPush, Verdict::Now)]);
    }

    #[test]
    fn fallback_then_quiet_hours_then_bypass() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let channels = email_only();
        let mut mention = cat("mention");
        mention.email_fallback_after = Some(600);
        let p = prefs(json!({"quiet_hours": {"start": "22:00", "end": "07:00"}}));
        // 23:00 in Berlin (summer, UTC+2).
        let night = at("2026-06-01T21:00:00Z");
        let s = situation(&channels, Some(&mention), &p, &berlin);
        assert_eq!(
            decide_channel(&s, Channel::Email, night),
            Verdict::Fallback {
                at: night.plus_secs(600)
            }
        );
        let checked = Situation {
            fallback_checked: true,
            ..s.clone()
        };
        assert_eq!(
            decide_channel(&checked, Channel::Email, night),
            Verdict::Held {
                until: at("2026-06-02T05:00:00Z")
            }
        );
        let mut bypassing = mention.clone();
        bypassing.bypass_quiet_hours = true;
        let bypass = Situation {
            category: Some(&bypassing),
            ..checked
        };
        assert_eq!(decide_channel(&bypass, Channel::Email, night), Verdict::Now);
    }

    #[test]
    fn quiet_hours_over_midnight_and_by_day() {
        let utc = TimeZone::UTC;
        let mut q = quiet("22:00", "07:00");
        // 2026-06-01 is a Monday.
        assert_eq!(
            quiet_until(&q, &utc, at("2026-06-01T23:30:00Z")),
            Some(at("2026-06-02T07:00:00Z"))
        );
        assert_eq!(
            quiet_until(&q, &utc, at("2026-06-02T06:59:59Z")),
            Some(at("2026-06-02T07:00:00Z"))
        );
        assert_eq!(quiet_until(&q, &utc, at("2026-06-02T07:00:00Z")), None);
        assert_eq!(quiet_until(&q, &utc, at("2026-06-01T21:59:59Z")), None);
        // Only nights starting on Monday: Tuesday morning is quiet (it
        // started Monday), Tuesday night is not.
        q.days = vec!["mon".into()];
        assert!(quiet_until(&q, &utc, at("2026-06-02T03:00:00Z")).is_some());
        assert_eq!(quiet_until(&q, &utc, at("2026-06-02T23:00:00Z")), None);
        // Within a day.
        let lunch = quiet("12:00", "13:00");
        assert_eq!(
            quiet_until(&lunch, &utc, at("2026-06-01T12:30:00Z")),
            Some(at("2026-06-01T13:00:00Z"))
        );
        assert_eq!(quiet_until(&lunch, &utc, at("2026-06-01T13:30:00Z")), None);
    }

    #[test]
    fn quiet_hours_across_daylight_saving_changes() {
        let q = quiet("22:00", "07:00");
        // Berlin springs forward on 2026-03-29 (02:00 → 03:00): the night
        // from 22:00 CET (21:00Z) to 07:00 CEST (05:00Z) lasts 7 hours.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            quiet_until(&q, &berlin, at("2026-03-28T21:30:00Z")),
            Some(at("2026-03-29T05:00:00Z"))
        );
        // New York falls back on 2026-11-01 (02:00 → 01:00): 07:00 EST is 12:00Z.
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            quiet_until(&q, &ny, at("2026-11-01T05:30:00Z")),
            Some(at("2026-11-01T12:00:00Z"))
        );
        assert_eq!(quiet_until(&q, &ny, at("2026-11-01T12:00:00Z")), None);
        // Sydney falls back on 2026-04-05 (03:00 AEDT → 02:00 AEST): quiet
        // from 01:00 to 04:00 lasts 4 hours that night.
        let sydney = TimeZone::get("Australia/Sydney").unwrap();
        let early = quiet("01:00", "04:00");
        // 01:00 AEDT (UTC+11) on the 5th is 14:00Z on the 4th.
        assert_eq!(
            quiet_until(&early, &sydney, at("2026-04-04T14:00:00Z")),
            Some(at("2026-04-04T18:00:00Z")),
            "04:00 AEST (UTC+10) is 18:00Z"
        );
        // A start inside a gap: 02:30 does not exist in Berlin on 2026-03-29;
        // it moves forward by the gap, so quiet hours begin at 03:30 CEST (01:30Z).
        let gap = quiet("02:30", "06:00");
        assert_eq!(quiet_until(&gap, &berlin, at("2026-03-29T01:29:00Z")), None);
        assert_eq!(
            quiet_until(&gap, &berlin, at("2026-03-29T01:30:00Z")),
            Some(at("2026-03-29T04:00:00Z"))
        );
        // Sydney springs forward on 2026-10-04 (02:00 AEST → 03:00 AEDT).
        // Saturday's 03:00–02:15 ends at 03:15 AEDT, a quarter of an hour
        // into Sunday's period: held until Sunday's ends, Monday 02:15.
        let weekend = QuietHours {
            days: vec!["sat".into(), "sun".into()],
            ..quiet("03:00", "02:15")
        };
        let monday = Some(at("2026-10-04T15:15:00Z"));
        assert_eq!(
            quiet_until(&weekend, &sydney, at("2026-10-02T17:00:17Z")),
            monday
        );
        assert_eq!(
            quiet_until(&weekend, &sydney, at("2026-10-03T16:14:00Z")),
            monday
        );
        assert_eq!(
            quiet_until(&weekend, &sydney, at("2026-10-04T15:15:00Z")),
            None
        );
    }

    const ZONES: [&str; 3] = ["Europe/Berlin", "America/New_York", "Australia/Sydney"];

    /// A civil-time oracle: quiet when the local time of day is within a
    /// period that started on a listed day.
    fn civil_quiet(q: &QuietHours, zone: &TimeZone, now: Millis) -> bool {
        let z = jiff::Timestamp::from_millisecond(now.0)
            .unwrap()
            .to_zoned(zone.clone());
        let t = LocalTime::new(z.hour(), z.minute());
        let today = q.starts_on(z.weekday());
        let yesterday = q.starts_on(z.date().yesterday().unwrap().weekday());
        if q.start < q.end {
            today && q.start <= t && t < q.end
        } else {
            (today && t >= q.start) || (yesterday && t < q.end)
        }
    }

    /// Whether a DST change in `zone` lies within 26 hours of `now`.
    fn near_transition(zone: &TimeZone, now: Millis) -> bool {
        let ts = jiff::Timestamp::from_millisecond(now.0).unwrap();
        let offset = |t: jiff::Timestamp| zone.to_offset(t);
        let span = jiff::SignedDuration::from_hours(26);
        offset(ts) != offset(ts.checked_sub(span).unwrap())
            || offset(ts) != offset(ts.checked_add(span).unwrap())
    }

    fn quiet_hours_strategy() -> impl Strategy<Value = QuietHours> {
        (
            0i8..24,
            0i8..4,
            0i8..24,
            0i8..4,
            proptest::collection::vec(any::<bool>(), 7),
        )
            .prop_filter_map("start and end differ", |(sh, sm, eh, em, days)| {
                let start = LocalTime::new(sh, sm * 15);
                let end = LocalTime::new(eh, em * 15);
                (start != end).then(|| QuietHours {
                    start,
                    end,
                    days: belfry_core::preferences::DAYS
                        .iter()
                        .zip(days)
                        .filter(|(_, on)| *on)
                        .map(|(d, _)| d.to_string())
                        .collect(),
                })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Over a whole year (so across both DST changes) in three zones:
        /// a held delivery is released at the end of quiet hours, in the
        /// future, at most a day away, at the local end time (or just
        /// after a gap), the same end a minute earlier; away from DST changes
        /// the answer agrees with local clock time.
        #[test]
        fn held_until_the_end_of_quiet_hours(
            q in quiet_hours_strategy(),
            zone in 0usize..3,
            minute in 0i64..(366 * 24 * 60),
        ) {
            let tz = TimeZone::get(ZONES[zone]).unwrap();
            let now = Millis(at("2026-01-01T00:00:00Z").0 + minute * 60_000 + 17_000);
            let until = quiet_until(&q, &tz, now);
            if let Some(u) = until {
                prop_assert!(u > now);
                // At most a day away, unless a gap joined two periods.
                let offset = |m: Millis| tz.to_offset(jiff::Timestamp::from_millisecond(m.0).unwrap());
                prop_assert!(
                    u.0 - now.0 <= 25 * 3600 * 1000
                        || (offset(now) != offset(u) && u.0 - now.0 <= 49 * 3600 * 1000)
                );
                let z = jiff::Timestamp::from_millisecond(u.0).unwrap().to_zoned(tz.clone());
                let local = LocalTime::new(z.hour(), z.minute());
                let after_gap = LocalTime::new((q.end.hour + 1) % 24, q.end.minute);
                prop_assert!(local == q.end || local == after_gap, "released at {} not {}", local, q.end);
                // Still quiet a minute before, and released into the same end.
                prop_assert_eq!(quiet_until(&q, &tz, Millis(u.0 - 60_000)), Some(u));
            }
            if !near_transition(&tz, now) {
                prop_assert_eq!(until.is_some(), civil_quiet(&q, &tz, now));
            }
        }
    }

    #[test]
    fn digest_times_across_daylight_saving_changes_and_midnight() {
        let t = |s: &str| LocalTime::parse(s).unwrap();
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 17:00 in Berlin (winter): 18:00 the same day; at 18:00 sharp, the next day.
        assert_eq!(
            next_digest(t("18:00"), &berlin, at("2026-01-14T16:00:00Z")),
            Some(at("2026-01-14T17:00:00Z"))
        );
        assert_eq!(
            next_digest(t("18:00"), &berlin, at("2026-01-14T17:00:00Z")),
            Some(at("2026-01-15T17:00:00Z"))
        );
        // Over midnight: 00:15 is tomorrow's.
        assert_eq!(
            next_digest(t("00:15"), &berlin, at("2026-01-14T22:00:00Z")),
            Some(at("2026-01-14T23:15:00Z"))
        );
        // Spring forward (2026-03-29, 02:00 → 03:00): 02:30 does not exist and
        // becomes 03:30 CEST; 18:00 the day before and after are 23 h apart.
        assert_eq!(
            next_digest(t("02:30"), &berlin, at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
        assert_eq!(
            next_digest(t("18:00"), &berlin, at("2026-03-28T17:00:00Z")),
            Some(at("2026-03-29T16:00:00Z"))
        );
        // New York falls back on 2026-11-01: 01:30 happens twice; the first
        // (EDT, 05:30Z) is the digest, and not again an hour later.
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            next_digest(t("01:30"), &ny, at("2026-11-01T04:00:00Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            next_digest(t("01:30"), &ny, at("2026-11-01T05:30:00Z")),
            Some(at("2026-11-02T06:30:00Z"))
        );
        // Sydney springs forward on 2026-10-04 (02:00 → 03:00 AEDT).
        let sydney = TimeZone::get("Australia/Sydney").unwrap();
        assert_eq!(
            next_digest(t("02:15"), &sydney, at("2026-10-03T12:00:00Z")),
            Some(at("2026-10-03T16:15:00Z")),
            "03:15 AEDT (UTC+11)"
        );
    }

    #[test]
    fn who_takes_a_digest() {
        let mut mention = cat("mention");
        let cats = vec![mention.clone()];
        assert!(!uses_digest(&prefs(json!({})), &cats));
        assert!(uses_digest(
            &prefs(json!({"categories": {"mention": {"email": "digest"}}})),
            &cats
        ));
        assert!(uses_digest(
            &prefs(json!({"sources": {"helpdesk": {"email": "digest"}}})),
            &cats
        ));
        mention.defaults.email = EmailMode::Digest;
        let cats = vec![mention];
        assert!(uses_digest(&prefs(json!({})), &cats));
        assert!(!uses_digest(
            &prefs(json!({"categories": {"mention": {"email": "instant"}}})),
            &cats
        ));
        assert!(!uses_digest(&prefs(json!({"enabled": false})), &cats));
        assert!(!uses_digest(
            &prefs(json!({"channels": {"email": false}})),
            &cats
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Over a whole year in three zones: the next digest is in the
        /// future, at most a day (and a DST hour) away, at the chosen local
        /// time (or just after a gap); nothing earlier qualifies (asking a
        /// millisecond before gives the same answer); the one after it is
        /// 23 to 25 hours later, on the next local day; away from DST changes
        /// it is the civil next occurrence.
        #[test]
        fn the_next_digest_runs_once_a_day_at_the_local_time(
            hour in 0i8..24,
            quarter in 0i8..4,
            zone in 0usize..3,
            minute in 0i64..(366 * 24 * 60),
            jitter in 0i64..60_000,
        ) {
            let time = LocalTime::new(hour, quarter * 15);
            let tz = TimeZone::get(ZONES[zone]).unwrap();
            let after = Millis(at("2026-01-01T00:00:00Z").0 + minute * 60_000 + jitter);
            let next = next_digest(time, &tz, after).unwrap();
            prop_assert!(next > after);
            prop_assert!(next.0 - after.0 <= 25 * 3600 * 1000);
            let local = |m: Millis| jiff::Timestamp::from_millisecond(m.0).unwrap().to_zoned(tz.clone());
            let z = local(next);
            let got = LocalTime::new(z.hour(), z.minute());
            let after_gap = LocalTime::new((time.hour + 1) % 24, time.minute);
            prop_assert!(got == time || got == after_gap, "at {} not {}", got, time);
            prop_assert_eq!(next_digest(time, &tz, Millis(next.0 - 1)), Some(next));
            let then = next_digest(time, &tz, next).unwrap();
            prop_assert!((23 * 3600 * 1000..=25 * 3600 * 1000).contains(&(then.0 - next.0)));
            prop_assert_eq!(local(then).date(), z.date().tomorrow().unwrap());
            if !near_transition(&tz, after) {
                let now = local(after);
                let today = now.date().to_datetime(time.civil());
                let civil = if now.datetime() < today { today } else {
                    now.date().tomorrow().unwrap().to_datetime(time.civil())
                };
                prop_assert_eq!(z.datetime(), civil);
            }
        }
    }
}
