\set t random(1, 10)
BEGIN;
SELECT app.set_tenant(('00000000-0000-0000-0000-' || lpad(:t::text, 12, '0'))::uuid) \; SELECT id, resource, starts_at FROM bench.bookings WHERE tenant_id = ('00000000-0000-0000-0000-' || lpad(:t::text, 12, '0'))::uuid ORDER BY starts_at DESC LIMIT 20;
INSERT INTO bench.bookings (tenant_id, resource, starts_at, ends_at) VALUES (('00000000-0000-0000-0000-' || lpad(:t::text, 12, '0'))::uuid, 'bench', now(), now() + interval '1 hour');
COMMIT;
