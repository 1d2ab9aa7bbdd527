"""The reproduction of the paper: the protocol (Sec. 4.2) and Table 1's runs (:mod:`.experiments`), the runner
and the evaluation suite, stored results (:mod:`.storage`, :mod:`.schema`, :mod:`.provenance`), Table 1 and the
claims (:mod:`.reporting`), the command line (:mod:`.cli`), Fig. 1 (:mod:`.fig1`), Fig. 2 (:mod:`.regression`,
:mod:`.fig2_search`, :mod:`.fig2_seeds`), Section 3's checks (:mod:`.theory`) and the certificates study beyond
the paper (:mod:`.certificates`). It imports the core, never the book."""
