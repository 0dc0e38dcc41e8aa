"""The `mmflow` command line: above flows/ and deployments/, which never import it."""
