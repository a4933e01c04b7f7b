from ringpool_coordinator.cli import main

main()
