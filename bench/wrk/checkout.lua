-- wrk -t2 -c256 -d10s -s bench/wrk/checkout.lua http://127.0.0.1:8000
-- POST /api/checkout with a valid body (class B: the large default capacity).
-- wrk itself reports "Non-2xx or 3xx responses" if any checkout is refused.
wrk.method = "POST"
wrk.path = "/api/checkout"
wrk.body = '{"cls": "B", "customer_email": "bench@example.com"}'
wrk.headers["Content-Type"] = "application/json"
