"""The gettext catalogs against the code.

Every msgid the code uses (found with Babel's extraction API and babel.cfg, exactly as
`pybabel extract` finds them) is translated in every catalog, not fuzzy, with the plural
forms its language needs; no catalog entry is left that the code no longer uses; and no
user-visible text is passed inline to a send/reply/edit/answer call.
"""

from __future__ import annotations

import ast
import re
import string
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from quickcart.i18n import LANGUAGES, LOCALE_DIR

ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")

Expected = dict[str, str | None]  # msgid -> msgid_plural (the count parameter) or None


def extract(root: Path = ROOT) -> Catalog:
    """The template `pybabel extract -F babel.cfg -s .` (make messages) builds from `root`."""
    with (root / "babel.cfg").open() as fileobj:
        method_map, options_map = parse_mapping_cfg(fileobj)
    catalog = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
            root, method_map, options_map, keywords=DEFAULT_KEYWORDS,
            strip_comment_tags=True):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                    context=context)
    return catalog


def msgids(catalog: Catalog) -> Expected:
    """msgid -> msgid_plural (None for a singular text), header left out."""
    out: Expected = {}
    for message in catalog:
        if not message.id:
            continue
        if isinstance(message.id, (list, tuple)):
            out[message.id[0]] = message.id[1]
        else:
            out[message.id] = None
    return out


@cache
def used_in_code() -> Expected:
    return msgids(extract())


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


def _forms(message: Message) -> tuple[str, ...]:
    string_ = message.string
    return tuple(string_) if isinstance(string_, (list, tuple)) else (string_ or "",)


def catalog_problems(po: Path, expected: Expected) -> list[str]:
    """What keeps the catalog at `po` from serving every msgid in `expected`, one line each."""
    with po.open("rb") as fileobj:
        catalog = read_po(fileobj)
    problems = []
    if catalog.fuzzy:
        problems.append(f"{po.name}: the header is fuzzy (pybabel compile would skip it)")
    nplurals = get_plural(catalog.locale).num_plurals if catalog.locale else 0
    if catalog.num_plurals != nplurals:
        problems.append(f"Plural-Forms says nplurals={catalog.num_plurals}, "
                        f"CLDR {catalog.locale} has {nplurals}")
    present = {key: catalog.get(key) for key in expected}
    for key, plural in expected.items():
        message = present[key]
        if message is None:
            problems.append(f"{key}: missing")
            continue
        if message.fuzzy:
            problems.append(f"{key}: fuzzy")
        entry_plural = message.id[1] if isinstance(message.id, (list, tuple)) else None
        if entry_plural != plural:
            problems.append(f"{key}: the code has msgid_plural {plural!r}, the catalog "
                            f"{entry_plural!r} (run make messages)")
        forms = _forms(message)
        if not all(forms):
            problems.append(f"{key}: untranslated")
        if plural is not None and len(forms) != catalog.num_plurals:
            problems.append(f"{key}: {len(forms)} plural forms, nplurals={catalog.num_plurals}")
    for message in catalog:
        key = message.id[0] if isinstance(message.id, (list, tuple)) else message.id
        if key and key not in expected:
            problems.append(f"{key}: not used in the code (pybabel extract does not find it:"
                            " wrap a key kept as data in N_(), or delete the entry)")
    return problems


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_serves_every_msgid_in_the_code(language: str) -> None:
    assert catalog_problems(po_path(language), used_in_code()) == []


def test_template_matches_the_code() -> None:
    with (LOCALE_DIR / "messages.pot").open("rb") as fileobj:
        template = msgids(read_po(fileobj))
    assert template == used_in_code(), "messages.pot is out of date: run `make messages`"


def test_code_uses_keys_as_msgids() -> None:
    """A msgid that is not a key means babel.cfg's keywords caught something else."""
    assert [key for key in used_in_code() if not KEY.match(key)] == []


def test_every_language_has_a_catalog() -> None:
    assert sorted(p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/*.po")) \
        == sorted(LANGUAGES)


BROKEN_PO = """\
msgid ""
msgstr ""
"Language: en\\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\\n"
"Content-Type: text/plain; charset=UTF-8\\n"

msgid "a.fine"
msgstr "Fine"

msgid "a.empty"
msgstr ""

#, fuzzy
msgid "a.fuzzy"
msgstr "Guessed"

msgid "a.count"
msgid_plural "count"
msgstr[0] "{count} item"
msgstr[1] ""

msgid "a.stale"
msgstr "Nobody asks for me"
"""


def test_checker_reports_missing_untranslated_fuzzy_and_stale(tmp_path: Path) -> None:
    """The negative case: the checker above on a catalog with one of each fault."""
    po = tmp_path / "messages.po"
    po.write_text(BROKEN_PO)
    expected: Expected = {"a.fine": None, "a.empty": None, "a.fuzzy": None,
                          "a.count": "count", "a.missing": None}
    problems = catalog_problems(po, expected)
    assert sorted(problems) == sorted([
        "a.empty: untranslated",
        "a.fuzzy: fuzzy",
        "a.count: untranslated",
        "a.missing: missing",
        "a.stale: not used in the code (pybabel extract does not find it: wrap a key kept"
        " as data in N_(), or delete the entry)",
    ])
    assert catalog_problems(po, {"a.fine": "count"}) != []  # singular where a plural is due


def test_extraction_finds_keys_as_pybabel_does(tmp_path: Path) -> None:
    """babel.cfg's keywords on a sample: call sites, markers, plurals; tests are ignored."""
    (tmp_path / "babel.cfg").write_text((ROOT / "babel.cfg").read_text())
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "x.py").write_text(textwrap.dedent('''
        t(context, "a.by_t", n=1)
        render("a.by_render", "id")
        PARTS = [(N_("a.as_data"), {})]
        # i18n: how many
        N_plural("a.plural", "count")
        reply(update, "\\n".join(lines))
        effects.message(user_id, "a.queued")
    '''))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text('render("a.in_a_test")\n')
    catalog = extract(tmp_path)
    assert msgids(catalog) == {"a.by_t": None, "a.by_render": None, "a.as_data": None,
                               "a.plural": "count", "a.queued": None}
    plural = catalog.get("a.plural")
    assert plural is not None and plural.auto_comments == ["how many"]


# --- keys the code composes at run time (quickcart/i18n_keys.py)

def _python_files(*dirs: str) -> Iterator[Path]:
    for directory in dirs:
        yield from sorted((ROOT / directory).rglob("*.py"))


def test_every_shop_error_code_has_its_text() -> None:
    """Refusals are rendered as f"error.{code}": every ShopError("code") needs error.code."""
    codes = set()
    for path in _python_files("bot", "workers", "quickcart", "api"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ShopError" \
                    and node.args:  # ShopError("a" if ... else "b") too
                codes |= {c.value for c in ast.walk(node.args[0])
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    assert codes, "no ShopError found: the scan is broken"
    assert sorted(c for c in codes if f"error.{c}" not in used_in_code()) == []


def test_every_bot_command_has_its_texts() -> None:
    bot_commands = pytest.importorskip("quickcart.bot_commands")
    names = [*bot_commands.SHOPPER_COMMANDS, *bot_commands.ADMIN_COMMANDS]
    keys = [f"command.{name}" for name in names]
    keys += ["usage.user" if name in bot_commands.USER_ID_COMMANDS else f"usage.{name}"
             for name in bot_commands.ADMIN_COMMANDS]
    assert [key for key in keys if key not in used_in_code()] == []


# --- no text inline in send/reply/edit/answer calls

#: Functions that put text in front of a user -> the positional arguments that hold it
#: (None: all of them) and the keyword arguments that do.
SENDERS: dict[str, tuple[range, tuple[str, ...]]] = {
    "reply": (range(2), ("text",)),          # bot: reply(update, text); workers: (chat_id, key)
    "reply_text": (range(2), ("text",)),     # Message.reply_text(text); workers: (chat_id, parts)
    "reply_html": (range(1), ("text",)),
    "send_message": (range(2), ("text",)),   # Chat.send_message(text), Bot/messenger (chat, text)
    "edit_message_text": (range(1), ("text",)),
    "edit_message_caption": (range(0), ("caption",)),
    "edit_caption": (range(2, 3), ("caption",)),   # messenger: chat_id, message_id, caption
    "answer": (range(1), ("text",)),         # callback queries
    "_tell": (range(2), ("text",)),          # bot/gate.py
    "send_photo": (range(2, 3), ("caption",)),     # chat_id, photo, caption
    "send_document": (range(2, 4), ("caption",)),  # Bot: chat, document, caption; messenger:
    "InlineKeyboardButton": (range(1), ("text",)),  # chat, filename, data, caption
    "KeyboardButton": (range(1), ("text",)),
}
#: Calls whose own arguments are catalog keys or data, not text: not searched inside.
NOT_TEXT = {"t", "render", "N_", "N_plural", "join", "get", "encode", "str", "int", "len"}


def _literals(node: ast.AST) -> Iterator[ast.Constant]:
    """String literals that end up in the text: nested catalog calls and data left out."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if isinstance(func, ast.Attribute):
            yield from _literals(func.value)  # "Hello {}".format(...), "\n".join(...)
        if name not in NOT_TEXT:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                yield from _literals(arg)
    elif isinstance(node, (ast.Subscript, ast.Attribute, ast.Name, ast.Lambda)):
        return
    else:
        for child in ast.iter_child_nodes(node):
            yield from _literals(child)


def _is_text(literal: str, keys: set[str]) -> bool:
    """Words a person reads: letters that are not a catalog key or a key prefix."""
    if not any(ch.isalpha() for ch in literal) or literal in keys:
        return False
    return not re.fullmatch(r"[a-z][a-z0-9_]*\.([a-z0-9_]+\.?)*", literal)


def inline_texts(source: str, keys: set[str]) -> list[str]:
    """`name(...): 'literal'` for every text literal passed to a SENDERS function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in SENDERS:
            continue
        positions, keywords = SENDERS[name]
        args = [a for i, a in enumerate(node.args) if i in positions]
        args += [k.value for k in node.keywords if k.arg in keywords]
        for arg in args:
            for literal in _literals(arg):
                if _is_text(str(literal.value), keys):
                    found.append(f"line {literal.lineno}: {name}(...): {literal.value!r}")
    return found


def test_no_inline_text_in_send_calls() -> None:
    keys = set(used_in_code())
    found = [f"{path.relative_to(ROOT)} {hit}"
             for path in _python_files("bot", "workers", "quickcart/services")
             for hit in inline_texts(path.read_text(), keys)]
    assert found == [], "user-visible text belongs in the catalog (quickcart/messages.py)"


def test_inline_text_check_can_fail() -> None:
    """The negative case: each way a text can slip in is reported; keys and data are not."""
    source = textwrap.dedent('''
        await reply(update, "Stok habis")
        await query.answer(text="Done!")
        await chat.send_message(f"Halo {name}")
        await reply(update, t(context, "a.key") + "\\n" + "Lihat juga")
        messenger.send_document(chat_id, f"{invoice}.txt", data, caption="Your file")
        InlineKeyboardButton("🇬🇧 English", callback_data="a:lang:en")
        await reply(update, "Total: {}".format(total))
        await reply(update, t(context, "a.key"), markup)
        await reply(update, "\\n".join(lines))
        reply(chat_id, "a.key", once_key="x")
        reply(chat_id, f"error.{refusal.code}")
        messenger.send_document(chat_id, f"quickcart-{user_id}.json", data.encode("utf-8"), cap)
        InlineKeyboardButton("+5", callback_data="o:q")
        await query.answer()
    ''')
    assert sorted(hit.split(": ", 2)[-1] for hit in inline_texts(source, {"a.key"})) == sorted([
        "'Stok habis'", "'Done!'", "'Halo '", "'Lihat juga'", "'Your file'", "'🇬🇧 English'",
        "'Total: {}'"])


# --- the catalogs agree with each other

def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "id"])
def test_translations_use_the_source_placeholders(language: str) -> None:
    """Each translation names the same {placeholders} as the Indonesian text."""
    with po_path("id").open("rb") as fileobj:
        source = read_po(fileobj)
    with po_path(language).open("rb") as fileobj:
        target = read_po(fileobj)
    wrong = []
    for message in source:
        translated = target.get(message.id) if message.id else None
        if translated is None:
            continue
        want = set().union(*map(_placeholders, _forms(message)))
        got = [_placeholders(form) for form in _forms(translated)]
        # a singular may spell the number out ("one voucher"); the other forms name it
        if set().union(*got) != want or any(not g <= want for g in got):
            wrong.append((message.id, want, got))
    assert wrong == []
