-- bench/cache.py: 95% point reads, 5% updates of the same hot table.
-- -D rows=N sets the id range (100,000 by default).
\set id random(1, :rows)
\set r random(1, 100)
\if :r <= 95
SELECT val, n FROM bench_items WHERE id = :id;
\else
UPDATE bench_items SET n = n + 1 WHERE id = :id;
\endif
