"""What mail software writes in subjects and bodies, in the languages mail is written in.

Public API: `DELIVERY`, `AUTO_REPLY`, `COMPLAINT`, `CHALLENGE` (the kinds), `subject_phrase
(subject) -> Phrase | None`, `text_phrase(text) -> Phrase | None`, `diagnostics(text) -> str`,
`reply_prefix(subject) -> bool`, `own_text(text) -> str`, `Phrase`.

Two strengths of subject phrase:

- *set forms* that mail servers and clients put at the start of a subject and people do not
  write: Exchange's "Undeliverable:" and its translations ("Unzustellbar:", "Non remis :",
  "Non recapitabile:", "配信不能:"), Postfix's "Undelivered Mail Returned to Sender",
  Sendmail's "Returned mail:", Exim's "Mail delivery failed", qmail's "failure notice",
  Outlook's "Automatic reply:" ("Automatische Antwort:", "Réponse automatique :",
  "Respuesta automática:", "Risposta automatica:", "Resposta automática:", "Automatisch
  antwoord:", "自動応答:"), Exchange 2003's "Out of Office AutoReply:", Lotus Notes' "AUTO:
  ... is out of the office";
- *hints*, words a person may also write ("Delivery failure", "Out of office", "AUTO:",
  "Abwesend"): they count only with other evidence (`mailbridge.core.robots`).

Body phrases are read in the sender's own words only (`own_text`: above the first quoted
line or forwarded/original-message marker), so a person forwarding a bounce, or replying
above one, is not taken for the bounce. They name the reader's mail, not parcels and not
"my message": "your message could not be delivered", "Impossibile recapitare il messaggio".
What autoresponders say of themselves ("This is an automatic reply") is a phrase; a
statement of absence ("I am out of the office"), which people write too, is a weak one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DELIVERY = "delivery failure"
AUTO_REPLY = "automatic reply"
COMPLAINT = "complaint report"
CHALLENGE = "challenge-response request"


@dataclass(frozen=True)
class Phrase:
    """A phrase found: its kind (`DELIVERY`, ...), the words as written, and whether the
    phrase is a set form of mail software (decisive) or a hint."""

    kind: str
    words: str
    decisive: bool = False
    weak: bool = False
    """Words a person says as well ("I am out of the office"): they only back evidence."""


def _words(*alternatives: str) -> re.Pattern[str]:
    """One pattern of lower-case alternatives, searched in `_lower` text."""
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def _lower(text: str) -> str:
    """`text` in lower case, one character for one (a match's place is the same in both,
    so the words are given as written). The patterns are written in lower case and match
    without re.IGNORECASE, which made every search about three times slower."""
    lowered = text.lower()
    if len(lowered) == len(text):  # lower() never shortens: each character gave one
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)  # "İ" -> "i̇"


_COLON = r"\s*[:：]"
# Subjects set by mail servers and clients, matched at the start of the subject.
_SET_SUBJECTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (DELIVERY, _words(
        # en: Postfix, Sendmail, Exim, qmail, Exchange, Gmail, Domino, gateways
        r"undelivered mail returned to sender", r"returned mail" + _COLON,
        r"mail delivery failed", r"delivery status notification", r"postmaster notify",
        r"failure notice\s*$", r"undeliverable" + _COLON, r"undeliverable (?:mail|message)",
        r"undelivered mail", r"non[- ]?delivery (?:notification|report)",
        r"(?:mail|message) delivery has failed", r"delivery has failed",
        r"(?:mail|message) could not be delivered", r"your message could not be delivered",
        r"sorry,? your message could not be delivered", r"mail system error",
        r"warning:? could not send message for past", r"delayed mail \(still being retried\)",
        r"delivery (?:status )?notification" + _COLON, r"mail delivery (?:status|failure)",
        r"returned mail\s*-\s*error", r"nondeliverable mail",
        r"(?:mail|message) failed,? returning (?:message )?to sender",
        # de, fr, es, it, pt, nl: Exchange and Notes in their languages
        r"unzustellbar" + _COLON, r"nicht zustellbar" + _COLON,
        r"unzustellbare (?:nachricht|e-?mail)", r"non remis" + _COLON,
        r"non distribuable" + _COLON, r"(?:message|courrier) non (?:remis|distribu[ée])",
        r"no se puede entregar" + _COLON, r"no entregado" + _COLON,
        r"mensaje no entregado", r"non recapitabile" + _COLON, r"non recapitato" + _COLON,
        r"n[ãa]o [ée] poss[íi]vel entregar" + _COLON, r"n[ãa]o entregue" + _COLON,
        r"mensagem n[ãa]o entregue", r"onbestelbaar" + _COLON, r"niet bezorgd" + _COLON,
        # sv, pl, cs, fi, ru, ja, zh
        r"olevererbart" + _COLON, r"niedostarczalne" + _COLON, r"nedoru[čc]iteln[ée]" + _COLON,
        r"недоставленное сообщение", r"ваше сообщение не доставлено",
        r"配信不能", r"配信できません", r"メッセージを配信できません", r"メール送信エラー",
        r"メールエラー通知", r"配信エラー", r"无法投递", r"無法傳遞", r"退信",
    )),
    (AUTO_REPLY, _words(
        r"automatic reply" + _COLON, r"auto(?:matic)?[- ]?reply" + _COLON,
        r"auto(?:matic)?[- ]?(?:reply|response)\s*$",
        r"(?:absence|absent|abwesend|afwezig|fr[åa]nvarande|ausente|fuori sede)" + _COLON,
        r"auto[- ]?respon(?:se|der)" + _COLON, r"out of (?:the )?office auto ?reply",
        r"out of (?:the )?office" + _COLON,
        r"auto\s*:.{0,80}\b(?:is out of (?:the )?office|is away|is absent|returning)",
        r"abwesenheitsnotiz", r"automatische antwort" + _COLON,
        r"auto\s*:.{0,80}\b(?:ist au(?:ß|ss)er haus|ist abwesend)",
        r"r[ée]ponse automatique" + _COLON, r"absence du bureau" + _COLON,
        r"auto\s*:.{0,80}\best absente? du bureau",
        r"respuesta autom[áa]tica" + _COLON, r"fuera de (?:la )?oficina" + _COLON,
        r"risposta automatica" + _COLON, r"fuori (?:sede|ufficio)" + _COLON,
        r"resposta autom[áa]tica" + _COLON, r"aus[êe]ncia tempor[áa]ria" + _COLON,
        r"automatisch antwoord" + _COLON, r"afwezigheidsbericht", r"niet aanwezig" + _COLON,
        r"自動応答" + _COLON, r"不在" + _COLON, r"自動返信" + _COLON, r"不在通知",
        r"自动回复" + _COLON, r"自動回覆" + _COLON, r"自動回復" + _COLON, r"autosvar" + _COLON,
        r"automatisk svar" + _COLON, r"automaattinen vastaus" + _COLON,
        r"automatyczna odpowied[źz]" + _COLON, r"automatick[áa] odpov[ěe]d" + _COLON,
        r"автоматический ответ" + _COLON,
    )),
    (CHALLENGE, _words(r"sender verification (?:request|required)",
                       r"please confirm your (?:e-?mail|message)" + _COLON)),
)
# Words a person may write too: they count only beside other evidence.
_SUBJECT_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (DELIVERY, _words(
        r"\bundeliver(?:able|ed)\b", r"\bdelivery (?:failure|failed|problem|report|status)",
        r"\bfail(?:ed|ure) (?:delivery|notice)", r"\breturned (?:mail|message)",
        r"\bmail (?:failure|error)", r"\bdelivery notification", r"\bbounced? (?:mail|message)",
        r"\bcould not send message", r"\breturning (?:message )?to sender", r"\bnon remis",
        r"\bnicht zustellbar|\bunzustellbar",
        r"\bzustellung fehlgeschlagen", r"\b[ée]chec de (?:la )?(?:remise|distribution)",
        r"\bimpossible d'envoyer", r"\bmessage frozen", r"\bpermanent delivery failure",
        r"\bno entregado", r"\bnon recapitat", r"\bn[ãa]o entregue", r"\bonbestelbaar",
        r"配信(?:不能|エラー|失敗)", r"送信エラー", r"不達", r"エラー通知")),
    (AUTO_REPLY, _words(
        r"^auto\s*[:：]", r"\bout of (?:the )?office\b", r"\baway from (?:the|my) office",
        r"\bon (?:vacation|holiday|leave)\b", r"\babwesen(?:d|heit)", r"\bau(?:ß|ss)er haus",
        r"\burlaub\b", r"\babsen(?:t|te|ce)\b", r"\bcong[ée]s?\b", r"\bausen(?:te|cia)\b",
        r"\bvacaciones\b", r"\bferie\b", r"\bf[ée]rias\b", r"\bafwezig", r"\bvakantie\b",
        r"不在", r"休暇")),
    (COMPLAINT, _words(
        r"\bcomplaint about message from\b", r"\babuse report\b", r"\bspam (?:complaint|report)",
        r"\bfeedback report\b", r"\bunsolicited (?:bulk|commercial) e-?mail\b",
        r"\bspamtrap", r"\bforensic report\b")),
)
_YOUR_MAIL = r"(?:your|the|this|following|original) (?:message|mail|e-?mail)"
"""Bounces speak of the reader's message; a person of "my message"."""
_TEXT: tuple[tuple[str, re.Pattern[str]], ...] = (
    (CHALLENGE, _words(
        r"protecting (?:myself|my inbox) from (?:receiving )?(?:junk|spam)",
        r"(?:to be added|to add yourself|be added) to my (?:list of )?(?:allowed|approved"
        r"|trusted|authori[sz]ed|accepted|safe|guest) (?:senders?|contacts|list)",
        r"(?:allow|accept) (?:incoming )?(?:e-?mails?|messages?) only from (?:senders|people"
        r"|addresses) (?:i have|i've) (?:approved|allowed|authori[sz]ed)",
        r"to release your (?:message|e-?mail)",
        r"(?:click|follow|visit|open)\b.{0,120}\b(?:verify|confirm|prove) (?:that )?you are "
        r"(?:a )?(?:human|real person|person|not a (?:robot|spammer))",
        r"(?:verify|confirm|prove) (?:that )?you are (?:a )?(?:human|real person|not a "
        r"(?:robot|spammer)).{0,120}\b(?:click|link|reply)",
        r"(?:your|this) (?:message|e-?mail) (?:is|has been|was) (?:being )?held (?:until|"
        r"pending)")),
    (DELIVERY, _words(
        # Always about mail, never about a parcel: "your message", recipients, mailboxes.
        rf"{_YOUR_MAIL}\b.{{0,80}}(?:(?:could not|couldn't|cannot|can't|was not|wasn't|has not"
        r" been) (?:be )?deliver|was undeliverable)",
        r"delivery to (?:the following|these|this) recipients?", r"delivery has failed to",
        r"permanent fatal errors", r"a permanent error (?:has )?occurred",
        r"mail delivery (?:software|subsystem|system)", r"failed permanently",
        r"this is the mail system at host", r"delivery status notification",
        r"user unknown|unknown user|no such (?:user|recipient|mailbox)",
        r"mailbox (?:unavailable|is full|full|not found|does not exist)",
        r"recipient address rejected", r"undeliverable (?:mail|message)",
        r"(?:message|mail)\b.{0,40}returned to (?:the )?sender",
        r"(?:unable|wasn't able|was not able) to deliver (?:your|the) (?:message|mail|e-?mail)",
        r"(?:nachricht|e-?mail|mail)\b.{0,80}konnte nicht (?:an .{0,60})?(?:zugestellt|"
        r"übermittelt) werden",
        r"(?:message|courrier|courriel|e-?mail)\b.{0,80}n'a pas (?:pu|été) (?:être )?"
        r"(?:remis|distribu|délivr|transmis)",
        r"(?:mensaje|correo)\b.{0,80}no (?:se )?(?:pudo|ha podido|puede) (?:ser )?entregar",
        r"no se (?:pudo|puede) entregar (?:el|su|este) (?:mensaje|correo)",
        r"impossibile recapitare (?:il|questo|un) messaggio",
        r"messaggio\b.{0,80}non (?:è stato possibile|può essere) recapitat",
        r"(?:mensagem|e-?mail)\b.{0,80}n[ãa]o (?:p[ôo]de|foi poss[íi]vel) (?:ser )?entreg",
        r"n[ãa]o foi poss[íi]vel entregar (?:a|sua|esta) mensagem",
        r"(?:bericht|e-?mail)\b.{0,80}kon niet (?:worden )?(?:bezorgd|afgeleverd)",
        r"(?:メール|メッセージ).{0,30}(?:配信|送信|配送)(?:でき|され)ませんでした", r"配信不能",
        r"宛先不明", r"(?:メール|メッセージ).{0,30}届きませんでした",
        r"(?:сообщение|письмо).{0,60}не (?:может быть|было|удалось) доставлен")),
    (AUTO_REPLY, _words(
        # What autoresponders say about themselves.
        r"this is an auto(?:mated|matic)(?:ally generated)? (?:reply|response|message)",
        r"(?:for|of) this auto(?:mated|matic) (?:reply|response|message)",
        r"(?:respond|reply|get back to you|answer) .{0,40}(?:upon|on|after|when) (?:i|my)"
        r" return", r"limited access to (?:my )?e-?mail",
        r"your (?:e-?mail|message) (?:will|is) not (?:be )?(?:forwarded|read)",
        r"(?:dies ist|diese nachricht ist) eine automatisch", r"automatisch generierte",
        r"ceci est une r[ée]ponse automatique", r"(?:ceci est un|ce) message automatique",
        r"esta es una respuesta autom[áa]tica", r"questa [èe] una risposta automatica",
        r"esta [ée] uma resposta autom[áa]tica", r"dit is een automatisch (?:antwoord|bericht)",
        r"自動応答", r"自動返信", r"このメールは自動")),
    (COMPLAINT, _words(
        r"this is an? (?:e-?mail )?abuse report", r"complaint about message",
        r"(?:received|reported) (?:a |as )?(?:spam|abuse) (?:complaint|report)",
        r"feedback loop", r"marked (?:it |this )?as spam")),
)
_ABSENCE = _words(
    # A person may say these too: they back an auto-reply, never decide one.
    r"(?:i am|i'm|i will be|i'll be) (?:currently )?(?:out of (?:the )?office|away from"
    r" (?:the|my) (?:office|desk)|on (?:annual )?(?:leave|vacation|holiday)|out of town)",
    r"ich bin .{0,60}(?:nicht im b[üu]ro|abwesend|im urlaub|au(?:ß|ss)er haus)",
    r"je (?:suis|serai) .{0,30}absente?",
    r"(?:estoy|estar[ée]) .{0,30}(?:fuera de la oficina|de vacaciones|ausente)",
    r"(?:sono|sar[òo]) .{0,30}(?:fuori (?:sede|ufficio)|in ferie|assente)",
    r"(?:estou|estarei) .{0,30}(?:fora do escrit[óo]rio|de f[ée]rias|ausente)",
    r"ik ben .{0,60}(?:afwezig|niet aanwezig|op vakantie|met vakantie|buiten kantoor)",
    r"不在にして")
_DIAGNOSTICS = re.compile(
    r"^\s*(?:final-recipient|original-recipient|diagnostic-code|reporting-mta|remote-mta)\s*:"
    r"|\b[45]\d\d[- ][45]\.\d{1,3}\.\d{1,3}\b|^\s*<<<\s*[45]\d\d\b|^\s*>>>\s*rcpt to",
    re.MULTILINE)
_REPLY_PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|antw|vs|odp|ynt|rif|fwd?|wg|tr|doorst|rv|enc|vl|pd|返信|転送|回复|转发)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)
_QUOTE_START = re.compile(
    r"^\s*>|^\s*-{2,}\s*(?:original|forwarded|ursprüngliche|weitergeleitete|message d'origine"
    r"|message transféré|mensaje original|mensaje reenviado|messaggio originale"
    r"|messaggio inoltrato|mensagem original|mensagem encaminhada|oorspronkelijk bericht"
    r"|doorgestuurd bericht|元のメッセージ|転送されたメッセージ)"
    r"|^\s*begin forwarded message|^\s*_{10,}\s*$"
    r"|^.{0,200}\b(?:wrote|schrieb|a écrit|escribió|ha scritto|escreveu|schreef)\s*:\s*$"
    r"|^\s*(?:from|von|de|da|van|差出人)\s*:.*\n\s*(?:sent|gesendet|envoyé|enviado|inviato"
    r"|verzonden|date|datum|送信日時)\s*:", re.MULTILINE)
OPENING = 2000
"""How many characters of the sender's own words are searched for phrases."""


def reply_prefix(subject: str) -> bool:
    """Whether the subject starts as a person's reply or forward does (Re:, AW:, Fwd: ...)."""
    return bool(_REPLY_PREFIX.match(subject))


def subject_phrase(subject: str) -> Phrase | None:
    """The phrase of mail software at the start of `subject`, a set form before a hint;
    None for a reply or forward (Re:, Fwd: ...), whose subject is a person's."""
    if reply_prefix(subject):
        return None
    text = " ".join(subject.split())
    lowered = _lower(text)
    for kind, pattern in _SET_SUBJECTS:
        found = pattern.match(lowered)
        if found:
            return Phrase(kind, _written(text, found), decisive=True)
    for kind, pattern in _SUBJECT_HINTS:
        found = pattern.search(lowered)
        if found:
            return Phrase(kind, _written(text, found))
    return None


def own_text(text: str) -> str:
    """The sender's own words: the text above the first quoted line or forward marker."""
    found = _QUOTE_START.search(_lower(text))
    return text[:found.start()] if found else text


def text_phrase(text: str) -> Phrase | None:
    """The first phrase of mail software in the opening of `text` (already the sender's
    own words), challenge requests first; a statement of absence ("I am out of the
    office") last, as a weak phrase."""
    opening = " ".join(text[:OPENING].split())
    lowered = _lower(opening)
    for kind, pattern in _TEXT:
        found = pattern.search(lowered)
        if found:
            return Phrase(kind, _written(opening, found))
    found = _ABSENCE.search(lowered)
    return Phrase(AUTO_REPLY, _written(opening, found), weak=True) if found else None


def diagnostics(text: str) -> str:
    """A delivery report's field or an SMTP reply in `text` ("Diagnostic-Code:", "550
    5.1.1"), as written; "" when there is none."""
    opening = text[:OPENING * 4]
    found = _DIAGNOSTICS.search(_lower(opening))
    return " ".join(_written(opening, found).split()) if found else ""


def _written(text: str, found: re.Match[str]) -> str:
    """What `found` (a match in `_lower(text)`) matched, as `text` writes it."""
    return text[found.start():found.end()].strip()
