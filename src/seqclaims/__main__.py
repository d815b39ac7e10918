from seqclaims.cli import main

raise SystemExit(main())
