"""Drives tokenmint's STS-compatible endpoint with real AWS clients (boto3 and the AWS CLI).

Usage: python sts_clients.py CASES.json
CASES.json is a list of cases; each is run in order and its outcome printed
as one JSON list on stdout. Errors are reported the way SDK users see them:
botocore's ClientError code (e.response['Error']['Code']) and HTTP status.

Case ops:
  assume      boto3 sts.assume_role_with_web_identity (endpoint_url), then
              sts.get_caller_identity signed with the returned credentials
  assume_only the same without get_caller_identity
  chain       the default provider chain: AWS_WEB_IDENTITY_TOKEN_FILE +
              AWS_ROLE_ARN + AWS_ENDPOINT_URL_STS, then get_caller_identity
  gci         get_caller_identity with the given (possibly broken) credentials
  cli_assume  aws sts assume-role-with-web-identity --endpoint-url, then
              aws sts get-caller-identity with those credentials
"""

import json
import os
import subprocess
import sys

import boto3
import botocore.config
import botocore.exceptions

ONE_TRY = botocore.config.Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    parameter_validation=False,
)


def client_error(e):
    return {
        "ok": False,
        "code": e.response["Error"]["Code"],
        "message": e.response["Error"].get("Message", ""),
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
    }


def sts(endpoint, **creds):
    return boto3.session.Session(region_name="us-east-1").client(
        "sts", endpoint_url=endpoint, config=ONE_TRY, **creds
    )


def identity(client):
    out = client.get_caller_identity()
    return {"Arn": out["Arn"], "UserId": out["UserId"], "Account": out["Account"]}


def op_assume(case):
    client = sts(case["endpoint"])
    kwargs = {
        "RoleArn": case["role_arn"],
        "RoleSessionName": case["session"],
        "WebIdentityToken": case["token"],
    }
    if "duration" in case:
        kwargs["DurationSeconds"] = case["duration"]
    try:
        out = client.assume_role_with_web_identity(**kwargs)
    except botocore.exceptions.ClientError as e:
        return client_error(e)
    creds = out["Credentials"]
    result = {
        "ok": True,
        "AccessKeyId": creds["AccessKeyId"],
        "SecretAccessKey": creds["SecretAccessKey"],
        "SessionToken": creds["SessionToken"],
        "Expiration": creds["Expiration"].isoformat(),
        "Subject": out["SubjectFromWebIdentityToken"],
        "AssumedRoleArn": out["AssumedRoleUser"]["Arn"],
        "AssumedRoleId": out["AssumedRoleUser"]["AssumedRoleId"],
        "Provider": out["Provider"],
        "Audience": out["Audience"],
        "RequestId": out["ResponseMetadata"]["RequestId"],
    }
    if case["op"] == "assume_only":
        return result
    signed = sts(
        case["endpoint"],
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    result["identity"] = identity(signed)
    return result


def op_chain(case):
    # Only the provider chain's own inputs: no static keys anywhere.
    os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"] = case["token_file"]
    os.environ["AWS_ROLE_ARN"] = case["role_arn"]
    os.environ["AWS_ROLE_SESSION_NAME"] = case["session"]
    os.environ["AWS_ENDPOINT_URL_STS"] = case["endpoint"]
    try:
        session = boto3.session.Session(region_name="us-east-1")
        creds = session.get_credentials().get_frozen_credentials()
        client = session.client("sts", config=ONE_TRY)
        return {"ok": True, "AccessKeyId": creds.access_key, "identity": identity(client)}
    except botocore.exceptions.ClientError as e:
        return client_error(e)
    finally:
        for name in ["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_ENDPOINT_URL_STS"]:
            os.environ.pop(name, None)


def op_gci(case):
    client = sts(
        case["endpoint"],
        aws_access_key_id=case["access_key_id"],
        aws_secret_access_key=case["secret_access_key"],
        aws_session_token=case.get("session_token"),
    )
    try:
        return {"ok": True, "identity": identity(client)}
    except botocore.exceptions.ClientError as e:
        return client_error(e)


def aws_cli(args, env_extra=None):
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.run(
        [aws, "--output", "json", "--region", "us-east-1", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return proc


def op_cli_assume(case):
    proc = aws_cli(
        [
            "sts",
            "assume-role-with-web-identity",
            "--endpoint-url",
            case["endpoint"],
            "--role-arn",
            case["role_arn"],
            "--role-session-name",
            case["session"],
            "--web-identity-token",
            case["token"],
        ]
    )
    if proc.returncode != 0:
        return {"ok": False, "stderr": proc.stderr, "returncode": proc.returncode}
    out = json.loads(proc.stdout)
    creds = out["Credentials"]
    gci = aws_cli(
        ["sts", "get-caller-identity", "--endpoint-url", case["endpoint"]],
        {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        },
    )
    if gci.returncode != 0:
        return {"ok": False, "stderr": gci.stderr, "returncode": gci.returncode, "assumed": out}
    return {
        "ok": True,
        "AccessKeyId": creds["AccessKeyId"],
        "AssumedRoleArn": out["AssumedRoleUser"]["Arn"],
        "Subject": out["SubjectFromWebIdentityToken"],
        "identity": json.loads(gci.stdout),
    }


OPS = {"assume": op_assume, "assume_only": op_assume, "chain": op_chain, "gci": op_gci, "cli_assume": op_cli_assume}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    print(json.dumps([OPS[case["op"]](case) for case in cases]))


if __name__ == "__main__":
    main()
