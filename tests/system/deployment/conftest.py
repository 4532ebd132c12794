"""The deployment tests run in their own venv (.venv-deploy: azureml-core, azure-ai-ml, kubernetes-validate),
whose pins clash with the server's; they need none of the server's fixtures."""
