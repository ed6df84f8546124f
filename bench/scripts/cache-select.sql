-- bench/cache.py: point reads only (hit latency and CPU per hit).
-- -D rows=N: the hot set, small enough that a warm-up caches all of it.
\set id random(1, :rows)
SELECT val, n FROM bench_items WHERE id = :id;
