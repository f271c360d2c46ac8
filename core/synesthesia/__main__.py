from synesthesia.cli import main

main()
