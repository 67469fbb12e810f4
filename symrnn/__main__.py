from symrnn.cli import main

main()
