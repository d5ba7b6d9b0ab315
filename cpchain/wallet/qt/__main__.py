from cpchain.wallet.qt.app import main

main()
