-- 0005: boot events written before kiln redacted them quote the host's
-- boot URL with its token ("file=http://…/boot/<mac>.ipxe?token=<token>");
-- events are visible to every read-scope API user. Cut each such URL at its
-- "?token=" (one per event: DHCP writes one file= field).
UPDATE boot_events
SET detail = substr(detail, 1, instr(detail, '?token=') - 1) ||
    CASE WHEN instr(substr(detail, instr(detail, '?token=')), ' ') > 0
         THEN substr(substr(detail, instr(detail, '?token=')), instr(substr(detail, instr(detail, '?token=')), ' '))
         ELSE '' END
WHERE instr(detail, '?token=') > 0;
