-- wrk -t2 -c256 -d10s -s bench/wrk/reserve.lua http://127.0.0.1:8000
-- GET /api/accounting/reserve: the TigerBeetle path alone (two pending transfers per request).
wrk.method = "GET"
wrk.path = "/api/accounting/reserve?cls=B"
