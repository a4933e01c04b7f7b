from sdk.taskctl import main

main()
