from agentmeta.cli import main

main()
