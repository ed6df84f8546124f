-- bench/write_queue.py: the same INSERT, deferred by Levee's write queue.
\set n random(1, 1000000000)
/* levee:async */ INSERT INTO bench_events (payload) VALUES (:n);
