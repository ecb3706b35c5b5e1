"""Signs requests with botocore (S3SigV4Auth for service "s3", SigV4Auth for the others), as an independent oracle for the project's Signature V4
signer (tests/unit/net/sigv4_test.cpp). Reads a JSON document on stdin:

  {"access_key": ..., "secret_key": ..., "token": ... or "", "region": ...,
   "requests": [{"method", "url" (path already encoded), "params": [[name, value], ...],
                 "headers": [[name, value], ...], "body_hex", "service" (default "s3")}]}

and prints one JSON line per request: {"amz_date", "authorization"}.
"""
import json
import sys

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    doc = json.load(sys.stdin)
    creds = Credentials(doc["access_key"], doc["secret_key"], doc["token"] or None)
    for r in doc["requests"]:
        req = AWSRequest(method=r["method"], url=r["url"], data=bytes.fromhex(r["body_hex"]),
                         headers=dict(r["headers"]), params=dict(r["params"]))
        service = r.get("service", "s3")
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
        signer(creds, service, doc["region"]).add_auth(req)
        print(json.dumps({"amz_date": req.headers["X-Amz-Date"],
                          "authorization": req.headers["Authorization"]}))


if __name__ == "__main__":
    main()
