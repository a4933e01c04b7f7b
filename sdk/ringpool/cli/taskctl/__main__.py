from ringpool.cli.taskctl import main

main()
