from mmflow.cli.launch import main

main()
