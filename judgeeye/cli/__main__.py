from judgeeye.cli import main

main()
