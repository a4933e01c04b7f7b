from ringpool_node.cli import main

main()
