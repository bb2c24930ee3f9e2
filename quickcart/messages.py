"""The message catalog: every text a user reads, in Indonesian (default) and English.

The texts are gettext catalogs managed with Babel: quickcart/locale/id/LC_MESSAGES/messages.po
and quickcart/locale/en/LC_MESSAGES/messages.po, with quickcart/locale/messages.pot extracted
from the code. Code names a text by its key (the msgid, "order.paid") and renders it with
render(key, language, **params) (the bot: t(context, key, ...)). Parameters are {named},
HTML-escaped, and money parameters (MONEY_PARAMS) show as Rp12.500. The renderer lives in
quickcart/i18n.py; this module keeps the old import path.

To add a text:
1. Use its key in the code: render("x.y", lang, ...), t(context, "x.y", ...), or a function
   babel.cfg lists as taking a key (button, effects.message/admins, ...). A key the code keeps
   as data (a tuple, a dict, a conditional) is wrapped in N_("x.y"); a text whose wording
   follows a number in N_plural("x.y", "count") (the parameter holding the number). A key
   the code composes (f"error.{code}") is listed in quickcart/i18n_keys.py. A `# i18n:`
   comment on the line before reaches translators.
2. `make messages` (pybabel extract -F babel.cfg, then pybabel update): the new key appears,
   untranslated, in messages.pot and both .po files. Working beside others, adding the entry
   by hand to both .po files (msgid, msgstr; msgid_plural and msgstr[n] for a plural) is the
   same, and `make messages` brings messages.pot up to date afterwards.
3. Write the Indonesian and English msgstr (Indonesian plurals have one form, msgstr[0];
   English two: msgstr[0] for 1, msgstr[1] for the rest) and drop any "#, fuzzy" line.
4. Nothing else: `make test`/`make run` compile the .mo files (pybabel compile, `make
   catalogs`), and a .po newer than its .mo is compiled in memory when loaded.
tests/unit/test_translations.py fails while a key used in the code is missing, untranslated
or fuzzy in a catalog, or a catalog entry is no longer used.

To add a language: `pybabel init -i quickcart/locale/messages.pot -d quickcart/locale -l xx`,
translate it, and add "xx" to LANGUAGES in quickcart/i18n.py (and to the languages the
users table and account.set_language accept).
"""

from __future__ import annotations

from quickcart.i18n import LANGUAGES, MONEY_PARAMS, N_, N_plural, render

__all__ = ["LANGUAGES", "MONEY_PARAMS", "N_", "N_plural", "render"]
