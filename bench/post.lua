-- wrk script: POST the file named by BODY_FILE with the Content-Type named by CONTENT_TYPE.
-- wrk counts answers other than 2xx/3xx itself ("Non-2xx or 3xx responses").
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
