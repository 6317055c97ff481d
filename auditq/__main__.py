from auditq.entry import main

main()
