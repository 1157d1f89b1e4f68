-- 0009: syslog messages from the provisioned machines, attributed to a
-- machine (mac, host at the time) by source address, and to a boot
-- session: the id of that MAC's latest dhcp_offer boot event when the
-- message arrived (0: none). size is the bytes the message takes, for the
-- size-bound retention.

CREATE TABLE syslog_messages (
    id          INTEGER PRIMARY KEY,
    received_ms BIGINT  NOT NULL,
    sent_ms     BIGINT  NOT NULL DEFAULT 0,
    source      TEXT    NOT NULL,
    proto       TEXT    NOT NULL,
    mac         TEXT    NOT NULL DEFAULT '',
    host        TEXT    NOT NULL DEFAULT '',
    session     BIGINT  NOT NULL DEFAULT 0,
    facility    INTEGER NOT NULL,
    severity    INTEGER NOT NULL,
    hostname    TEXT    NOT NULL DEFAULT '',
    app         TEXT    NOT NULL DEFAULT '',
    procid      TEXT    NOT NULL DEFAULT '',
    msgid       TEXT    NOT NULL DEFAULT '',
    text        TEXT    NOT NULL DEFAULT '',
    size        INTEGER NOT NULL
);
CREATE INDEX syslog_messages_host ON syslog_messages (host, id);
CREATE INDEX syslog_messages_mac ON syslog_messages (mac, id);
CREATE INDEX syslog_messages_received ON syslog_messages (received_ms);
