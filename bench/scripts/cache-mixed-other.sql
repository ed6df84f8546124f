-- bench/cache.py: 95% point reads of bench_items, 5% updates of another table
-- (bench_counters), so the writes do not invalidate the cached table.
\set id random(1, :rows)
\set r random(1, 100)
\if :r <= 95
SELECT val, n FROM bench_items WHERE id = :id;
\else
UPDATE bench_counters SET n = n + 1 WHERE id = :id;
\endif
