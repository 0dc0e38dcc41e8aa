from mmflow.cli.app import app

app()
