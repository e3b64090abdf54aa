from hitrate.cli import main

main()
