-- lossguard schema v6: the outbox of alert notifications (--notify-webhook).
--
-- The analyzers write a notification in the ingest transaction that opens, escalates or resolves an
-- episode, with one delivery row per webhook target the server is configured with: a notification
-- is committed exactly when the alert it tells of is, so a crash between the two loses nothing.
-- The dispatcher posts each target's deliveries in id order and deletes a row once the receiver
-- took it; a target that refuses keeps its rows (bounded per target, the oldest dropped first).

-- This database's identity, part of every idempotency key: two lossguard databases never send the
-- same key for different notifications.
CREATE TABLE instance (
  singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
  id         TEXT    NOT NULL
);
INSERT INTO instance (singleton, id) VALUES (1, lower(hex(randomblob(16))));

-- The alert as it was when the notification was made (an "opened" one delivered late still says
-- what was opened); the parts of an alert that never change are read from alerts. AUTOINCREMENT:
-- ids never go back, even when every row has been delivered and deleted.
CREATE TABLE notifications (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id     INTEGER NOT NULL,
  event        TEXT    NOT NULL CHECK (event IN ('opened', 'escalated', 'resolved')),
  severity     TEXT    NOT NULL,
  state        TEXT    NOT NULL,
  last_step    INTEGER NOT NULL,
  message      TEXT    NOT NULL,
  evidence     TEXT    NOT NULL,
  created_at   REAL    NOT NULL
);
CREATE INDEX notifications_by_alert ON notifications (alert_id);

-- A webhook target, by the SHA-256 of its configuration (the URL may hold a secret, as Slack's do).
-- The dispatcher of one server at a time holds a target (lease_owner until lease_until); a target
-- that failed waits until next_attempt_at. `dropped` counts notifications dropped for it since its
-- last delivery (the next one delivered says so). seen_at: when a server last served it; a target
-- no server has served for an hour is removed with its deliveries.
CREATE TABLE notification_targets (
  target           TEXT    PRIMARY KEY,
  label            TEXT    NOT NULL,
  failures         INTEGER NOT NULL DEFAULT 0,
  next_attempt_at  REAL    NOT NULL DEFAULT 0,
  last_error       TEXT,
  lease_owner      TEXT,
  lease_until      REAL,
  dropped          INTEGER NOT NULL DEFAULT 0,
  seen_at          REAL    NOT NULL
);

CREATE TABLE notification_deliveries (
  target           TEXT    NOT NULL,
  notification_id  INTEGER NOT NULL,
  PRIMARY KEY (target, notification_id)
) WITHOUT ROWID;
CREATE INDEX notification_deliveries_by_notification ON notification_deliveries (notification_id);
