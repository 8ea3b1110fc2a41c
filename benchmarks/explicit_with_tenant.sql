\set t random(:first, :last)
BEGIN;
SELECT app.set_tenant('00000000-0000-0000-0000-0000000000:t') \; SELECT id, resource, starts_at FROM bench.bookings WHERE tenant_id = '00000000-0000-0000-0000-0000000000:t' ORDER BY starts_at DESC LIMIT :rows;
INSERT INTO bench.bookings (tenant_id, resource, starts_at, ends_at) VALUES ('00000000-0000-0000-0000-0000000000:t', 'bench', now(), now() + interval '1 hour');
COMMIT;
