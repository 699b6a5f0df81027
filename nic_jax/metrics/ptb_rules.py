"""The lexer rules of Stanford CoreNLP 3.4.1's PTBLexer.flex, in Python.

A port of the rules that text in Latin script exercises, in the .flex file's order
and with its macro names, under its default options (latexQuotes, ptb3Ellipsis,
ptb3Dashes, normalizeParentheses and other brackets, normalizeSpace, no
americanize, no escaping of "/" and "*"). JFlex semantics: at each position every
rule is tried, the longest match wins (trailing context included), then the earlier
rule. Literal words are caseless (`%caseless`), character classes are not.
"""

import re

_L = r"[^\W\d_]"  # [:letter:]
_D = r"\d"  # [:digit:]
_AN = r"[^\W_]"  # letter or digit
SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
NEWLINE = r"(?:\r\n|\r|\n|\u2028|\u2029|\u000B|\u000C|\u0085)"
SPACENL = rf"(?:{SPACE}|{NEWLINE})"
_NAME = r"[A-Za-z][A-Za-z0-9_:.\-]*"
SGML = (
    r"<(?:[!?][A-Za-z\-][^>\r\n]*|\/?[A-Za-z][A-Za-z0-9:.\-]*(?: +(?:"
    rf"{_NAME} *= *['\"][^\r\n'\"]*['\"]|{_NAME}|['\"][^\r\n'\"]*['\"]| *\/))* *)>"
)
APOS = r"(?:['\u0092\u2019]|(?i:&apos;))"
APOSETC = rf"(?:{APOS}|[\u0091\u2018\u201B])"
HYPHEN = r"[-_\u058A\u2010\u2011]"
SPLET = r"&[aeiouAEIOU](?:acute|grave|uml);"
LETTER = (
    rf"(?:{_L}|{SPLET}|[\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u0300-\u036F])"
)
WORD = rf"{LETTER}(?:{LETTER}|{_D})*(?:[.!?]{LETTER}(?:{LETTER}|{_D})*)*"
THING = (
    rf"(?:[dDoOlL]{APOSETC}{_AN})?{_AN}+"
    rf"(?:{HYPHEN}(?:[dDoOlL]{APOSETC}{_AN})?{_AN}+)*"
)
THINGA = r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+"
THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
REDAUX = rf"{APOS}(?:[msdMSD]|(?i:re|ve|ll))"
SWORD = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
SREDAUX = rf"(?i:n){APOSETC}(?i:t)"
APOWORD = (
    rf"{APOS}(?i:n){APOS}?|[lLdDjJ]{APOS}|(?i:dunkin){APOS}|(?i:somethin){APOS}"
    rf"|(?i:ol){APOS}|{APOS}(?i:em)|[A-HJ-XZn]{APOSETC}{_L}{{2}}{_L}*"
    rf"|{APOS}[2-9]0(?i:s)|{APOS}(?i:till?)"
    rf"|{_L}{_L}*[aeiouyAEIOUY]{APOSETC}[aeiouA-Z]{_L}*"
    rf"|{APOS}(?i:cause)|(?i:cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry"
    rf"|li'l|nat'l)"
)
APOWORD2 = rf"(?i:y){APOS}"
FULLURL = r"(?i:https?):\/\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"
LIKELYURL = (
    r"(?:(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
    r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu)))"
    r"(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"
)
EMAIL = (
    r"(?:&lt;|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@"
    r"(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*[^ \t\n\f\r\"<>|(){}.\u00A0]+(?:&gt;|>)?"
)
SMILEY = r"[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]"
TWITTER = rf"[@\uFF20][a-zA-Z_][a-zA-Z_0-9]*|[#\uFF03]{_L}(?:{_L}|{_D}|_)*"
DATE = rf"{_D}{{1,2}}[\-\/]{_D}{{1,2}}[\-\/]{_D}{{2,4}}"
NUM = rf"(?:{_D}*(?:[.:,\u00AD\u066B\u066C]{_D}+)+|{_D}+)"  # longer form first
NUMBER = rf"[\-+]?{NUM}"
FRAC = rf"(?:{_D}{{1,4}}[- \u00A0])?{_D}{{1,4}}(?:\\?\/|\u2044){_D}{{1,4}}"
FRAC2 = r"[\u00BC\u00BD\u00BE\u2153-\u215E]"
DOLSIGN = r"(?:[A-Z]*\$|#)"
DOLSIGN2 = (
    r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4"
    r"\uFFE0\uFFE1\uFFE5\uFFE6]"
)
ACRO = (
    r"(?:[A-Za-z](?:\.[A-Za-z])+|(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)"
    r"|(?i:u\.s\.-(?:u\.k|u\.s\.s\.r)))"
)
# Words that keep their period, as 3.4.1 tokenizes them. ABBREV1 words take two
# characters of trailing context (so "Inc.y'all" gives "Inc."); JFlex is caseless
# except inside classes, so "[A]rk." is an abbreviation and "ark." is not.
ABBREV1 = (
    r"(?:(?i:al|ala|apr|ariz|assn|aug|bancorp|bhd|bldg|blvd|bros|calif|cos?|colo"
    r"|conn|corp|ct|dak|dec|(?:ed|ph)\.d|esq|est|etc|ext|feb|fla|fri|ga|inc|ind"
    r"|intl|jan|jr|jul|jun|kans?|ky|ltd|mar|md|mich|minn|mo|mon|mont|neb|nev|nov|oct"
    r"|okla|penn|plc|pp?t[ye]s?|rd|rt|sept?|seq|sq|sr|sys|tel|tenn|thurs|thu|tues?"
    r"|univ|va|vt|wed|wisc?|wyo)|A(?i:rk|z)|D(?i:el)|I(?i:ll)|L(?i:a)|M(?i:ass|iss)"
    r"|O(?i:re)|P(?i:a)|T(?i:ex)|W(?i:ash))\."
)
ABBREV2 = (
    rf"(?:{ACRO}|(?i:a\.k\.a|adj|adm|adv|alex|assoc|asst|attys?|ave|az|brig|capt|cf"
    r"|cie|co?mdr|col|dept|det|drs?|elec|ens|ft|gen|govs?|hon|insp|invt|jos|lieut|lt"
    r"|maj|messrs|m[ft]g|mlle|mme|mrs|mr|ms|msgr|mt|natl|pfc|ph|pres|profs?|pvt"
    r"|reps?|rev|sens?|sfc|sgt|spc|ste?|supts?|treas|vs|wm)|[A-Za-z])\."
)
ABBREV3 = r"(?i:ca|figs?|prop|nos?|op|pp|art)\."  # only before a number
ACRONYM = r"[A-Za-z](?:\.[A-Za-z])*\."
# an acronym before one of these words ends a sentence; "I." then loses its period
_SENT_WORDS = (
    "About",
    "According",
    "Additionally",
    "After",
    "An",
    "A",
    "As",
    "At",
    "But",
    "Earlier",
    "He",
    "Her",
    "Here",
    "However",
    "If",
    "In",
    "It",
    "Last",
    "Many",
    "More",
    "Mr.",
    "Ms.",
    "Now",
    "Once",
    "One",
    "Other",
    "Our",
    "She",
    "Since",
    "So",
    "Some",
    "Such",
    "That",
    "The",
    "Their",
    "Then",
    "There",
    "These",
    "They",
    "This",
    "We",
    "When",
    "While",
    "What",
    "Yet",
    "You",
)
_SENT_START = "|".join(
    w[0] + "(?i:" + w[1:].replace(".", r"\.") + ")" if len(w) > 1 else w
    for w in _SENT_WORDS
)
PHONE = r"(?:\([0-9]{3}\)[ \u00A0]?|[0-9]{3}[\- \u00A0.])[0-9]{3}[\- \u00A0.][0-9]{4}"
HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|{ACRO}\.))+"
LDOTS = r"(?:\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026])"
INSENTP = r"[,;:]"
QUOTES = (
    rf"''|{APOS}|(?:[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093"
    r"\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2})"
)
DBLQUOT = r'(?:"|(?i:&quot;))'
TBSPEC = (
    r"(?:-(?i:rrb|lrb|rcb|lcb|rsb|lsb)-|(?i:c\.d\.s|pro-|anti-|s(?:&|&amp;)p-500"
    rf"|s(?:&|&amp;)ls)|(?i:cap){APOS}(?i:n)|(?i:c){APOS}(?i:est))"
)
TBSPEC2 = rf"{APOS}[0-9][0-9]"
MISCSYMBOL = (
    r"[\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7"
    r"\u00F7\u0387\u2020-\u2023\u2032-\u2038\u2044\u207A-\u207F\u208A-\u208E"
    r"\u2100-\u214F\u2190-\u21FF\u2200-\u22FF\u2300-\u23FF\u2600-\u26FF]"
)

_LEFT = {"'": "`", "&apos;": "`", '"': "``", "&quot;": "``"}
_RIGHT = {"'": "'", "&apos;": "'", '"': "''", "&quot;": "''"}
_UNICODE_QUOTES = [
    ("[\u0091\u2018\u201b\u2039]", "`"),
    ("[\u0092\u2019\u203a]", "'"),
    ("[\u0093\u201c\u00ab]", "``"),
    ("[\u0094\u201d\u00bb]", "''"),
]


def _quotes(probably_left: bool):
    """latexQuotes: ' and " become ` `` on the left of a word, ' '' elsewhere."""
    table = _LEFT if probably_left else _RIGHT

    def act(tok):
        out = re.sub(r"&apos;|'|\"|&quot;", lambda m: table[m.group(0)], tok)
        for pattern, repl in _UNICODE_QUOTES:
            out = re.sub(pattern, repl, out)
        return [out], len(tok)

    return act


def _keep(tok):
    return [tok.replace("\u00ad", "")], len(tok)


def _const(value):
    return lambda tok: ([value], len(tok))


def _pushback(k):
    return lambda tok: ([tok[:-k]], len(tok) - k)


def _acronym(tok):
    return ([tok[:-1]], 1) if len(tok) == 2 else ([tok], len(tok))


def _parens(tok):
    return [tok.replace("(", "-LRB-").replace(")", "-RRB-")], len(tok)


def _nbsp(tok):
    return [tok.replace(" ", "\u00a0")], len(tok)


def _hyphens(tok):
    return ["--" if 3 <= len(tok) <= 4 else tok], len(tok)


def _amp(tok):
    return [re.sub(r"(?i:&amp;)", "&", tok)], len(tok)


def _currency(tok):
    out = tok.replace("\u00a2", "cents").replace("\u00a3", "#")
    return [re.sub("[\u0080\u00a4\u20a0\u20ac]", "$", out)], len(tok)


def _fraction(tok):
    table = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3"}
    return [table.get(tok, tok)], len(tok)


def _skip(tok):
    return [], len(tok)


def _newline(tok):
    return ["\n"], len(tok)


# (token regex, trailing context regex or None, action), in PTBLexer.flex order
RULES = [
    (r"(?i:cannot|'twas)", None, _pushback(3)),
    (rf"{APOS}(?i:tis)|(?i:gonna|gotta|lemme|gimme|wanna)", None, _pushback(2)),
    (SGML, None, _nbsp),
    (r"(?i:&(?:MD|mdash|ndash);)|[\u0096\u0097\u2013\u2014\u2015]", None, _const("--")),
    (r"(?i:&amp;)", None, _const("&")),
    (r"(?i:&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);)", None, _keep),
    (WORD, REDAUX, _keep),
    (SWORD, SREDAUX, _keep),
    (WORD, None, _keep),
    (APOWORD, None, _keep),
    (APOWORD2, _L, _keep),
    (FULLURL, None, _keep),
    (LIKELYURL, None, _keep),
    (EMAIL, None, _keep),
    (TWITTER, None, _keep),
    (REDAUX, r"[^A-Za-z]", _quotes(False)),
    (SREDAUX, None, _quotes(False)),
    (DATE, None, _keep),
    (NUMBER, None, _keep),
    (FRAC, None, _nbsp),
    (FRAC2, None, _fraction),
    (TBSPEC, None, _amp),
    (THING3, None, _keep),
    (DOLSIGN, None, _keep),
    (DOLSIGN2, None, _currency),
    (ACRONYM, rf"{SPACENL}+(?:{_SENT_START}|{SGML}){SPACENL}", _acronym),
    (ABBREV3, rf"{SPACENL}?{_D}", _keep),
    (ABBREV1, r"[\s\S]{2}", _keep),
    (ABBREV1, None, _keep),
    (ABBREV2, None, _keep),
    (ACRO, SPACENL, _keep),
    (TBSPEC2, SPACENL, _keep),
    (rf"{WORD}\.", INSENTP, _keep),
    (PHONE, None, _nbsp),
    (DBLQUOT, r"[A-Za-z0-9$]", _quotes(True)),
    (DBLQUOT, None, _quotes(False)),
    (r"\+|[%&\u2030\u2031]|~|\^|\||\\", None, _keep),
    (SMILEY, r"[^A-Za-z0-9]", _parens),
    (r"<<|>>", None, _keep),
    (r"<|&lt;", None, _keep),
    (r">|&gt;", None, _keep),
    (r"\[", None, _const("-LSB-")),
    (r"\]", None, _const("-RSB-")),
    (r"\{", None, _const("-LCB-")),
    (r"\}", None, _const("-RCB-")),
    (r"\(", None, _const("-LRB-")),
    (r"\)", None, _const("-RRB-")),
    (r"-+", None, _hyphens),
    (LDOTS, None, _const("...")),
    (r"@+|#+|_+", None, _keep),
    (r"\*+|(?:\\\*){1,3}", None, _keep),
    (INSENTP, None, _keep),
    (r"[?!]+", None, _keep),
    (r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA]", None, _keep),
    (r"=", None, _keep),
    (r"\/", None, _keep),
    (rf"{HTHING}\.", INSENTP, _keep),
    (HTHING, None, _keep),
    (rf"{THING}\.", INSENTP, _keep),
    (THING, None, _keep),
    (rf"{THINGA}\.", INSENTP, _amp),
    (THINGA, None, _amp),
    (r"'", r"[A-Za-z][^ \t\n\r\u00A0]", _quotes(True)),
    (REDAUX, None, _quotes(False)),
    (QUOTES, None, _quotes(False)),
    (MISCSYMBOL, None, _keep),
    (rf"\x00|{SPACE}+|[\u200B\u200E\u200F\uFEFF]|&nbsp;", None, _skip),
    (NEWLINE, None, _newline),
]


def _compile(rules):
    out = []
    for token, context, action in rules:
        for alternative in _top_level(token):
            pattern = f"(?P<tok>{alternative})" + (f"(?:{context})" if context else "")
            out.append((re.compile(pattern, re.DOTALL), action))
    return out


def _top_level(pattern: str):
    """Splits a regex at its top-level |, so each alternative is tried for length."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = pattern.index(
                "]", i + 2 if pattern[i + 1 : i + 2] in ("]", "^") else i + 1
            )
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    return parts + [pattern[start:]]


_COMPILED = _compile(RULES)
_PLAIN = re.compile(r"[A-Za-z]+(?=[ \n]|$)")
_SPECIAL = {"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"}


def _next(text: str, pos: int):
    """(tokens, new position) of the longest, earliest rule at pos."""
    if text[pos] == " ":  # no rule but the whitespace one starts with a space
        return [], pos + 1
    if text[pos] == "\n":
        return ["\n"], pos + 1
    plain = _PLAIN.match(text, pos)
    if plain and plain.group(0).lower() not in _SPECIAL:
        return [plain.group(0)], plain.end()
    best, best_len = None, 0
    for pattern, action in _COMPILED:
        m = pattern.match(text, pos)
        if m and m.end() - pos > best_len:
            best, best_len = (m.group("tok"), action), m.end() - pos
    if best is None:
        return [], pos + 1  # untokenizable: deleted, as the default option does
    tokens, consumed = best[1](best[0])
    return tokens, pos + consumed


def lex(text: str) -> list:
    """PTB tokens of text (original case); each newline gives a "\\n" token."""
    tokens, pos = [], 0
    while pos < len(text):
        new, pos = _next(text, pos)
        tokens.extend(new)
    return tokens
