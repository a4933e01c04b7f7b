from ringpool.dashboard.cli import main

main()
