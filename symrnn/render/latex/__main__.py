from symrnn.render.latex.document import main

raise SystemExit(main())
