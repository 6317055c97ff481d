from auditq.cli import main

main()
