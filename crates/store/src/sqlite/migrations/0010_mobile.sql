-- Issue 14: mobile push (C6).

-- One row per mobile device registered for push: the platform (`fcm` for
-- Firebase Cloud Messaging, `apns` for Apple's push service), the device
-- token that platform gave the app, and the app it belongs to (`app_id`:
-- the APNs topic, i.e. the iOS bundle id; for FCM the app's package name).
-- A token names one app installation on one device, so it is unique per
-- platform: posted again (by the same or another user signed in on that
-- device) the row is updated and follows the user who posted it. The row
-- goes when its user is deleted, when the user removes it, when the push
-- service says the token is no longer valid (FCM UNREGISTERED or
-- INVALID_ARGUMENT, APNs Unregistered, BadDeviceToken,
-- DeviceTokenNotForTopic), or when the user exceeds the cap (the least
-- recently posted goes first: `updated_at`).
CREATE TABLE mobile_devices (
    id         TEXT PRIMARY KEY,       -- ULID, the API's id
    uid        INTEGER NOT NULL,       -- users.uid
    platform   TEXT NOT NULL,          -- 'fcm' | 'apns'
    token      TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (platform, token)
);
-- A user's devices (the delivery reads them; publishing asks which
-- recipients have any, one index probe per recipient, only when the
-- notification goes to mobile push).
CREATE INDEX mobile_devices_uid ON mobile_devices (uid, updated_at);
