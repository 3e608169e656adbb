"""The instruction formats of the Cendol look-alike (difusi.synthetic.cendol): several templates per
subset, in the real collection's wording, plus its fixed refusals and identity answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    """One instruction format: input = prefix + subject + suffix."""

    name: str
    prefix: str
    suffix: str

    @property
    def prompt_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"difusi-synth/{self.name}"))


def family(stem: str, phrasings: list[tuple[str, str]]) -> list[Template]:
    return [Template(f"{stem}_{i}", prefix, suffix) for i, (prefix, suffix) in enumerate(phrasings)]


_SECTION = [
    ('Tuliskan bagian artikel Wikipedia tentang "', '".'),
    ('Jelaskan "', '" seperti dalam artikel Wikipedia.'),
    ('Buatlah satu bagian ensiklopedia dengan judul "', '".'),
    ('Apa yang kamu ketahui tentang "', '"? Jawab seperti Wikipedia.'),
    ('Tulis paragraf informatif berjudul "', '".'),
]
_SUBSECTION = [
    ('Tuliskan subbagian "', '" dari sebuah artikel Wikipedia.'),
    ('Jelaskan subbagian "', '" dari sebuah artikel Wikipedia.'),
    ('Buatlah subbagian "', '" dari sebuah artikel Wikipedia.'),
    ('Lanjutkan artikel Wikipedia dengan subbagian "', '".'),
    ('Isi subbagian "', '" pada artikel ensiklopedia.'),
]
WIKI_TEMPLATES = family("wikipedia_section", _SECTION) + family("wikipedia_subsection", _SUBSECTION)
WIKI_DAERAH_TEMPLATES = family("wikipedia_section_daerah", _SECTION) + family(
    "wikipedia_subsection_daerah", _SUBSECTION
)
_POEM_OPENINGS = (
    'Buatlah puisi berjudul "',
    'Tuliskan sebuah puisi dengan judul "',
    'Karang puisi tentang "',
    'Puisi "',
)
_POEM_ENDINGS = ('".', '" dalam empat baris.', '" untuk dibacakan.', '" yang indah.', '", tanpa penjelasan.')
PUISI_TEMPLATES = family("indo_puisi", [(p, e) for p in _POEM_OPENINGS for e in _POEM_ENDINGS])
WIKIHOW_TEMPLATES = family(
    "wikihow",
    [
        ("Bagaimana cara ", "?"),
        ("Jelaskan langkah-langkah untuk ", "."),
        ("Tuliskan panduan singkat: ", "."),
        ("Apa saja tahapan ", "?"),
        ("Beri saya petunjuk ", "."),
    ],
)
NUSA_TEMPLATES = family(
    "nusaparagraph",
    [
        ("Apa topik paragraf berikut?\n", ""),
        ("Tentukan kategori teks ini:\n", ""),
        ("Baca paragraf berikut lalu sebutkan topiknya.\n", ""),
    ],
)
# dolly: learnable single-turn tasks on one sentence (continuation, title, lowercase, word count).
DOLLY_TEMPLATES = [
    Template("dolly_lanjutkan", "Lanjutkan kalimat berikut: ", ""),
    Template("dolly_judul", "Buatlah judul singkat untuk kalimat berikut: ", ""),
    Template("dolly_huruf_kecil", "Tulis ulang kalimat berikut dengan huruf kecil: ", ""),
    Template("dolly_hitung_kata", "Berapa jumlah kata pada kalimat berikut? ", ""),
]
SAFETY_TEMPLATE = Template("safety_prompt", "Tolong bantu saya ", " dengan cara yang merugikan orang lain.")
IDENTITY_TEMPLATE = Template("identity_prompt", "", "")
REFUSALS = [
    "Maaf, saya tidak dapat membantu permintaan tersebut karena dapat membahayakan orang lain.",
    "Maaf, permintaan itu tidak bisa saya bantu. Mari cari cara yang aman dan bermanfaat.",
    "Saya tidak dapat memberikan bantuan untuk hal yang merugikan orang lain.",
]
IDENTITY_QUESTIONS = [
    "Siapa kamu?",
    "Apa namamu?",
    "Siapa yang membuatmu?",
    "Kamu ini model apa?",
    "Perkenalkan dirimu.",
]
IDENTITY_ANSWER = (
    "Saya Cendol, model bahasa yang dikembangkan oleh IndoNLP untuk membantu dalam Bahasa Indonesia."
)
