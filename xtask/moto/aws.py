"""boto3 helper for the AWS executor's tests against moto: seeds fixtures and answers as an
independent oracle (the tests compare what the executor did with what boto3 reads back).

Usage (endpoint and credentials from the environment, as `cargo xtask moto-up` writes them):
  aws.py seed OUT.json                      seed the shared fixtures, write their ids
  aws.py call SERVICE OPERATION [JSON]      one boto3 call; prints the response as JSON
  aws.py create-instance [JSON]             run one instance (t3.micro, an EBS-backed image)
  aws.py create-service CLUSTER SERVICE N   a task definition and a service (Fargate)
  aws.py run-task CLUSTER TASKDEF [GROUP]   one Fargate task; prints it
  aws.py create-function NAME               a Python function from an inline zip
  aws.py create-role NAME                   a role assumable by Lambda
  aws.py create-policy NAME [DOCUMENT]      a managed policy
  aws.py moto-config                        let Lambda answer without Docker

Every resource name a test passes is its own, so tests run in parallel and repeatedly.
"""

import io
import json
import os
import sys
import urllib.request
import zipfile

import boto3

REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]


def client(service, region=None):
    return boto3.client(service, region_name=region or REGION, endpoint_url=ENDPOINT)


def out(value):
    if isinstance(value, dict):
        value.pop("ResponseMetadata", None)
    json.dump(value, sys.stdout, default=str, sort_keys=True)
    sys.stdout.write("\n")


def call(service, operation, kwargs=None, region=None):
    c = client(service, region)
    resp = getattr(c, operation)(**(kwargs or {}))
    for k, v in list(resp.items()):
        # Streaming bodies (Lambda Invoke, S3 GetObject) become text.
        if hasattr(v, "read"):
            resp[k] = v.read().decode("utf-8", "replace")
    return resp


def ebs_image():
    images = client("ec2").describe_images(
        Filters=[{"Name": "root-device-type", "Values": ["ebs"]}]
    )["Images"]
    if not images:
        raise SystemExit("moto offers no EBS-backed image")
    return sorted(images, key=lambda i: i["ImageId"])[0]["ImageId"]


def create_instance(extra=None):
    kwargs = {"ImageId": ebs_image(), "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}
    kwargs.update(extra or {})
    return client("ec2").run_instances(**kwargs)["Instances"][0]


def network():
    subnets = client("ec2").describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    if not subnets:
        raise SystemExit("moto has no default subnet")
    subnet = sorted(subnets, key=lambda s: s["SubnetId"])[0]
    groups = client("ec2").describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"]
    return {
        "awsvpcConfiguration": {
            "subnets": [subnet["SubnetId"]],
            "securityGroups": [g["GroupId"] for g in groups],
            "assignPublicIp": "DISABLED",
        }
    }


def create_service(cluster, service, count):
    ecs = client("ecs")
    ecs.create_cluster(clusterName=cluster)
    td = ecs.register_task_definition(
        family=f"{service}-td",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "app", "image": "nginx:1.27", "essential": True, "cpu": 256, "memory": 512}
        ],
    )["taskDefinition"]
    td2 = ecs.register_task_definition(
        family=f"{service}-td",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="1024",
        containerDefinitions=[
            {"name": "app", "image": "nginx:1.27", "essential": True, "cpu": 256, "memory": 1024}
        ],
    )["taskDefinition"]
    svc = ecs.create_service(
        cluster=cluster,
        serviceName=service,
        taskDefinition=td["taskDefinitionArn"],
        desiredCount=int(count),
        launchType="FARGATE",
        networkConfiguration=network(),
    )["service"]
    return {
        "cluster": cluster,
        "service": service,
        "service_arn": svc["serviceArn"],
        "task_definition": td["taskDefinitionArn"],
        "task_definition_2": td2["taskDefinitionArn"],
    }


def run_task(cluster, task_definition, group=None):
    ecs = client("ecs")
    kwargs = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "launchType": "FARGATE",
        "networkConfiguration": network(),
    }
    if group:
        kwargs["group"] = group
    return ecs.run_task(**kwargs)["tasks"][0]


def function_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {'echo': event}\n")
    return buf.getvalue()


def create_role(name):
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]


def create_policy(name, document=None):
    doc = document or json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
        }
    )
    return client("iam").create_policy(PolicyName=name, PolicyDocument=doc)["Policy"]


def create_function(name):
    role = create_role(f"{name}-role")
    return client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": function_zip()},
        MemorySize=128,
        Timeout=3,
    )


def moto_config():
    req = urllib.request.Request(
        f"{ENDPOINT}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": False}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def seed(path):
    moto_config()
    instance = create_instance()
    stopped = create_instance()
    client("ec2").stop_instances(InstanceIds=[stopped["InstanceId"]])
    svc = create_service("fixture-cluster", "fixture-web", 2)
    task = run_task("fixture-cluster", svc["task_definition"], "service:fixture-web")
    s3 = client("s3")
    s3.create_bucket(Bucket="fixture-bucket")
    s3.put_object(Bucket="fixture-bucket", Key="reports/2024/summary.txt", Body=b"fixture\n")
    role = create_role("fixture-role")
    policy = create_policy("fixture-read")
    fn = create_function("fixture-fn")
    fixtures = {
        "region": REGION,
        "endpoint_url": ENDPOINT,
        "ec2_running_instance": instance["InstanceId"],
        "ec2_stopped_instance": stopped["InstanceId"],
        "ecs_cluster": svc["cluster"],
        "ecs_service": svc["service"],
        "ecs_task_definition": svc["task_definition"],
        "ecs_task_definition_2": svc["task_definition_2"],
        "ecs_task_id": task["taskArn"].rsplit("/", 1)[-1],
        "s3_bucket": "fixture-bucket",
        "s3_key": "reports/2024/summary.txt",
        "iam_role": role["RoleName"],
        "iam_policy_arn": policy["Arn"],
        "lambda_function": fn["FunctionName"],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixtures, f, indent=2, sort_keys=True)
        f.write("\n")
    out(fixtures)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "seed":
        seed(args[0])
    elif cmd == "call":
        out(call(args[0], args[1], json.loads(args[2]) if len(args) > 2 else None))
    elif cmd == "create-instance":
        out(create_instance(json.loads(args[0]) if args else None))
    elif cmd == "create-service":
        out(create_service(args[0], args[1], args[2]))
    elif cmd == "run-task":
        out(run_task(args[0], args[1], args[2] if len(args) > 2 else None))
    elif cmd == "create-function":
        out(create_function(args[0]))
    elif cmd == "create-role":
        out(create_role(args[0]))
    elif cmd == "create-policy":
        out(create_policy(args[0], args[1] if len(args) > 1 else None))
    elif cmd == "moto-config":
        out(moto_config())
    else:
        raise SystemExit(f"unknown command {cmd!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
