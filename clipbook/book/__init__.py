"""The book's figures, widgets and status pages (needs ``clipbook[book]``): they draw what the core and the
reproduction computed and stored."""
from .. import require_extra

require_extra("book", "book", ("matplotlib",))
