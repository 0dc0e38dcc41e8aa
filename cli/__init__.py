"""The `mmflow` command line: above flows/ and deployments/, which never import it."""

from mmflow.cli.launch import apply_env_defaults

apply_env_defaults()  # before anything imports Prefect, which reads them then
