from readfirst.cli import main

main()
