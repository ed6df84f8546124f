-- bench/write_queue.py: one single-row INSERT per transaction, sent as is.
\set n random(1, 1000000000)
INSERT INTO bench_events (payload) VALUES (:n);
