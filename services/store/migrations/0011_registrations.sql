-- Registration of unknown machines at their console. A machine kiln
-- enrolled by itself (role "unknown") asks, from its boot menu, to become a
-- host of a given name. With provisioning.diskless.register.policy approve
-- the request waits here for an operator; approving applies what it holds
-- (its name, role, boot profile, root image and home, fixed when it was
-- made) to the enrolled host and removes the row; rejecting keeps the row
-- (state rejected) so the machine's console can say so.

CREATE TABLE registrations (
    mac          TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    role         TEXT   NOT NULL DEFAULT '',
    boot_profile TEXT   NOT NULL,
    root_image   TEXT   NOT NULL DEFAULT '',
    home         TEXT   NOT NULL DEFAULT '',
    client_ip    TEXT   NOT NULL DEFAULT '',
    state        TEXT   NOT NULL,
    reason       TEXT   NOT NULL DEFAULT '',
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
-- Two machines cannot wait for the same name.
CREATE UNIQUE INDEX registrations_pending_name ON registrations (name) WHERE state = 'pending';
