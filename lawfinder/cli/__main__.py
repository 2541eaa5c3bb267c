from lawfinder.cli.app import main

main()
