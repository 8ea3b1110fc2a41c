\set t random(:first, :last)
BEGIN;
SET LOCAL boom.tenant_id = '00000000-0000-0000-0000-0000000000:t' \; SELECT id, resource, starts_at FROM textbook.bookings ORDER BY starts_at DESC LIMIT :rows;
INSERT INTO textbook.bookings (resource, starts_at, ends_at) VALUES ('bench', now(), now() + interval '1 hour');
COMMIT;
