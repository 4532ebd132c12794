"""The how-to's deployment with the Azure ML v1 SDK: this scoring server as a web service on an AKS GPU cluster.

The how-to's original path (SDK v1, whose support ended 30 June 2026); docker/aks/deploy_v2.py is the main one.

    pip install azureml-core==1.61.0.post4        # requirements/deploy.txt pins it with the rest
    python docker/aks/deploy_v1.py --config config.json [--cluster gpu-cluster] [--delete]

Steps, as in the how-to: the workspace from its config.json; the GPU AKS cluster, attached
or created; the model registered; an Environment from myenv.yml on the Azure ML GPU base
image; the entry script server/score.py; an AksWebservice with one GPU per replica; deploy;
print the scoring URI and a key; with --delete, the service is deleted afterwards.
The configuration objects are built by the functions below, which tests/system/deployment build
offline with the real azureml-core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from azureml.core import Environment, Model, Workspace
from azureml.core.compute import AksCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.core.model import InferenceConfig
from azureml.core.webservice import AksWebservice

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cuda11.8-gpu-inference:latest"
MODEL_NAME = "tf-dnn-mnist"
SERVICE_NAME = "tfscoring-gpu"
GPU_VM_SIZE = "Standard_NC6s_v3"  # one V100 per node; any NC/ND size with NVIDIA GPUs works
# One gunicorn worker per core of the replica (cpu_cores below), sharing its GPU, each with its own
# session (server/tfscoring/process/sizing.py); each worker's threads feed its batcher. Azure ML's front end
# must let that many requests in at once, or batching never sees concurrent requests.
WORKERS = 2
THREADS = 16
SERVER_ENVIRONMENT = {
    "WORKER_COUNT": str(WORKERS),
    "GUNICORN_CMD_ARGS": f"--threads {THREADS}",
    "REQUIRE_GPU": "1",
    "MALLOC_MMAP_THRESHOLD_": "1048576",  # large bodies' memory goes back to the kernel (docs/operations.md)
}


def environment() -> Environment:
    env = Environment.from_conda_specification(name="tfscoring-gpu", file_path=str(REPO / "myenv.yml"))
    env.docker.base_image = BASE_IMAGE
    env.environment_variables = dict(SERVER_ENVIRONMENT)
    return env


def inference_config(env: Environment) -> InferenceConfig:
    # source_directory travels whole: score.py puts its folder on sys.path, so tfscoring/ comes with it.
    return InferenceConfig(source_directory=str(REPO / "server"), entry_script="score.py", environment=env)


def cluster_config():
    return AksCompute.provisioning_configuration(vm_size=GPU_VM_SIZE, agent_count=1)


def service_config() -> AksWebservice:
    return AksWebservice.deploy_configuration(
        gpu_cores=1,
        cpu_cores=WORKERS,
        memory_gb=8,
        replica_max_concurrent_requests=WORKERS * THREADS,  # every worker's threads busy
        max_request_wait_time=5000,  # ms in Azure ML's queue before a 503, like MAX_QUEUE_WAIT_MS
        scoring_timeout_ms=60000,
        auth_enabled=True,
        autoscale_enabled=True,
        autoscale_min_replicas=1,
        autoscale_max_replicas=4,
        autoscale_target_utilization=70,
        # Probes: the model loads in seconds, but TensorFlow's CUDA start-up can take a minute.
        initial_delay_seconds=60,
        period_seconds=10,
        timeout_seconds=5,
        failure_threshold=3,
    )


def gpu_cluster(ws: Workspace, name: str) -> ComputeTarget:
    try:
        return ComputeTarget(workspace=ws, name=name)
    except ComputeTargetException:
        cluster = ComputeTarget.create(ws, name, cluster_config())
        cluster.wait_for_completion(show_output=True)
        return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.json", help="the workspace's config.json")
    parser.add_argument("--cluster", default="gpu-cluster", help="AKS compute name (created if missing)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / MODEL_NAME / "1" / "model")
    parser.add_argument("--delete", action="store_true", help="delete the service after printing its URI")
    args = parser.parse_args()

    ws = Workspace.from_config(path=args.config)
    cluster = gpu_cluster(ws, args.cluster)
    # Registered from the model/ folder: Azure ML mounts it as $AZUREML_MODEL_DIR/model, as score.py expects.
    model = Model.register(ws, model_path=str(args.model_dir), model_name=MODEL_NAME)
    service = Model.deploy(
        ws,
        SERVICE_NAME,
        [model],
        inference_config(environment()),
        service_config(),
        deployment_target=cluster,
        overwrite=True,
    )
    service.wait_for_deployment(show_output=True)
    print("scoring URI:", service.scoring_uri)
    print("key:", service.get_keys()[0])
    print(f"python -m client.score_client --url {service.scoring_uri} --key <key> --count 100")
    if args.delete:
        service.delete()


if __name__ == "__main__":
    main()
