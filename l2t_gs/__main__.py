from l2t_gs.cli.main import main

raise SystemExit(main())
