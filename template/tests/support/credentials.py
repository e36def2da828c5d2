"""Passwords that break any hand-built connection URL."""

# Each character that means something in a URL, in percent-encoding or in SQL.
AWKWARD_CHARACTERS = (
    "@",
    ":",
    "/",
    "?",
    "#",
    "[",
    "]",
    "%",
    "+",
    "&",
    "=",
    ";",
    "'",
    '"',
    "\\",
    " ",
    "%41",
    "é",
    "密",
)

# All of them at once: the password the test database's service role uses.
AWKWARD_PASSWORD = "p@ss:w/o?r#d[1]%41+&=;'\\" + '" é密'
